-- Migration 1 (SQLite): the seed's schema of the resilience metrics database, as in
-- ../postgres/0001_init.sql with SQLite's auto-increment key (INTEGER PRIMARY KEY).

-- Every state change of a circuit breaker (the seed's table).
-- service_name: as in the circuit_breaker_state metric: "llm-service" (the pool
-- breaker), "instance:<id>", "endpoint:<id>". state: CLOSED, OPEN or HALF_OPEN.
CREATE TABLE IF NOT EXISTS circuit_breaker_metrics (
    id                 INTEGER PRIMARY KEY,
    service_name       VARCHAR(100) NOT NULL,
    timestamp          TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    state              VARCHAR(20) NOT NULL,
    failure_count      INTEGER DEFAULT 0,
    success_count      INTEGER DEFAULT 0,
    half_open_attempts INTEGER DEFAULT 0
);

CREATE INDEX IF NOT EXISTS idx_cb_metrics_timestamp ON circuit_breaker_metrics (timestamp);
CREATE INDEX IF NOT EXISTS idx_cb_metrics_service ON circuit_breaker_metrics (service_name);

-- Results of health checks (the seed's table).
-- status: healthy, degraded or unhealthy.
CREATE TABLE IF NOT EXISTS service_health_log (
    id               INTEGER PRIMARY KEY,
    service_name     VARCHAR(100) NOT NULL,
    timestamp        TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    status           VARCHAR(20) NOT NULL,
    response_time_ms INTEGER,
    error_message    TEXT
);

CREATE INDEX IF NOT EXISTS idx_health_log_timestamp ON service_health_log (timestamp);
CREATE INDEX IF NOT EXISTS idx_health_log_service ON service_health_log (service_name, timestamp);

-- One row per answer of the gateway, with the fields of the /generate answer.
-- request_id is not unique: a client may send its own X-Request-Id more than once.
-- served_by: the answering instance's SERVICE_ID, or fallback_manager.
-- fallback_type: NULL, secondary, cache or template.
-- fallback_reason: NULL, circuit_open, no_services_available, upstream_error or timeout.
CREATE TABLE IF NOT EXISTS request_log (
    id               INTEGER PRIMARY KEY,
    request_id       VARCHAR(100) NOT NULL,
    timestamp        TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    endpoint         VARCHAR(50) NOT NULL,
    model            VARCHAR(100),
    served_by        VARCHAR(100),
    status_code      INTEGER NOT NULL,
    fallback_used    BOOLEAN NOT NULL DEFAULT FALSE,
    fallback_type    VARCHAR(20),
    fallback_reason  VARCHAR(50),
    response_time_ms INTEGER,
    tokens_used      INTEGER
);

CREATE INDEX IF NOT EXISTS idx_request_log_timestamp ON request_log (timestamp);
CREATE INDEX IF NOT EXISTS idx_request_log_request_id ON request_log (request_id);
