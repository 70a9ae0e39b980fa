-- Migration 2 (SQLite): as ../postgres/0002_history.sql.
-- What the gateway's history adds to the seed's tables.
-- circuit_breaker_metrics: the state left and why (TransitionKind: consecutive_failures,
-- failure_rate, slow_call_rate, recovery_timeout_elapsed, probe_failed, probes_succeeded,
-- manual_reset, forced_open).
ALTER TABLE circuit_breaker_metrics ADD COLUMN previous_state VARCHAR(20);
ALTER TABLE circuit_breaker_metrics ADD COLUMN reason VARCHAR(40);
-- service_health_log: TRUE for a change of status, FALSE for a periodic sample.
ALTER TABLE service_health_log ADD COLUMN is_change BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX IF NOT EXISTS idx_health_log_change ON service_health_log (is_change, timestamp);
-- request_log: the model route, the tier that answered (primary, secondary, cache,
-- template), the W3C trace id.
ALTER TABLE request_log ADD COLUMN route VARCHAR(100);
ALTER TABLE request_log ADD COLUMN tier VARCHAR(20);
ALTER TABLE request_log ADD COLUMN trace_id VARCHAR(32);

-- chaos-monkey's experiments: one row per run, its journal (JSON) as text.
-- outcome: completed, aborted, failed.
CREATE TABLE IF NOT EXISTS chaos_experiments (
    id            INTEGER PRIMARY KEY,
    experiment_id VARCHAR(64) NOT NULL,
    name          VARCHAR(100) NOT NULL,
    target        VARCHAR(100) NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    ended_at      TIMESTAMPTZ NOT NULL,
    outcome       VARCHAR(20) NOT NULL,
    journal       TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS idx_chaos_experiments_started ON chaos_experiments (started_at);
