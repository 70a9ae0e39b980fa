#!/usr/bin/env bash
# Starts the gateway (port 8000) and two llm-services (8001, 8002) as local processes,
# registered in the Redis at $REDIS_URL (default redis://127.0.0.1:6379), and stops them
# all on Ctrl-C. Until the `lab` launcher lands (issue #6), this is the way to run the stack.
# Extra environment is passed through, e.g. SIM_FAILURE_RATE=0 scripts/run-local.sh
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
cargo build --quiet -p gateway -p llm-service

pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

PORT=8001 SERVICE_ID=llm_service_1 MODEL_NAME=gpt-3.5-turbo-simulation MAX_TOKENS=2048 \
    RESPONSE_TIME_SLA=5000 REDIS_URL=$REDIS_URL ./target/debug/llm-service &
pids+=($!)
PORT=8002 SERVICE_ID=llm_service_2 MODEL_NAME=gpt-4-simulation MAX_TOKENS=4096 \
    RESPONSE_TIME_SLA=8000 REDIS_URL=$REDIS_URL ./target/debug/llm-service &
pids+=($!)
PORT=8000 REDIS_URL=$REDIS_URL LLM_SERVICE_URLS=http://127.0.0.1:8001,http://127.0.0.1:8002 \
    ./target/debug/gateway &
pids+=($!)

for _ in $(seq 1 100); do
    if curl -fsS http://127.0.0.1:8000/ready >/dev/null 2>&1; then
        echo "gateway ready: http://127.0.0.1:8000 (llm-services on 8001, 8002); Ctrl-C stops all"
        break
    fi
    sleep 0.2
done
wait -n "${pids[@]}"
