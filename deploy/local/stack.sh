#!/usr/bin/env bash
# The whole platform on one machine, no Docker.
#   stack.sh infra   install what is missing, start Kafka + PostgreSQL, wait until they answer
#   stack.sh up      infra + the four services in the background; returns once all are ready
#   stack.sh run     up, print URLs and dev credentials, follow the logs; Ctrl-C stops all
#   stack.sh down    stop the services, Kafka and PostgreSQL; leaves no process behind
#   stack.sh status
# With CXM_OBSERVABILITY=1, `up` and `run` also start Prometheus (CXM_PROMETHEUS_PORT, 9090)
# with the consumer-lag and PostgreSQL exporters (deploy/local/prometheus.sh); `down` always
# stops them.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
PY=$ROOT/.venv/bin/python
SERVICES=(ingest profile scoring alerting)
declare -A PORTS=(
  [ingest]=${CXM_INGEST_PORT:-8001} [profile]=${CXM_PROFILE_PORT:-8002}
  [scoring]=${CXM_SCORING_PORT:-8003} [alerting]=${CXM_ALERTING_PORT:-8004}
)
DB_URL=postgresql+asyncpg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB

observability() { [ "${CXM_OBSERVABILITY:-0}" = 1 ]; }

infra() {
  bash "$ROOT/deploy/local/python.sh"
  bash "$ROOT/deploy/local/kafka.sh" start
  bash "$ROOT/deploy/local/postgres.sh" start
  "$PY" -m cxm_shared.readiness --kafka "127.0.0.1:$KAFKA_PORT" --postgres "$DB_URL" \
    --timeout "${CXM_READY_TIMEOUT:-90}" \
    || { tail_log "$LOG_DIR/kafka.log" 20; tail_log "$LOG_DIR/postgres.log" 20
         die "infrastructure did not become ready"; }
}

start_service() {
  local name=$1 pid=$RUN_DIR/$1.pid
  if pid_alive "$pid"; then log "$name already running (pid $(cat "$pid"))"; return 0; fi
  if port_open "${PORTS[$name]}"; then die "port ${PORTS[$name]} for $name is taken by another process"; fi
  log "starting $name on 127.0.0.1:${PORTS[$name]}"
  # No job control here, so the child is not a group leader and setsid execs python in place:
  # $! is the service's own pid.
  CXM_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT CXM_DATABASE_URL=$DB_URL CXM_DATA_DIR="$DATA_DIR" \
    setsid "$PY" -m "cxm_$name" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$pid"
}

wait_service() {
  local name=$1 url="http://127.0.0.1:${PORTS[$1]}/readyz" i
  for ((i = 0; i < ${CXM_READY_TIMEOUT:-120} * 2; i++)); do
    pid_alive "$RUN_DIR/$name.pid" || { tail_log "$LOG_DIR/$name.log"; die "$name exited during start"; }
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then log "$name ready"; return 0; fi
    sleep 0.5
  done
  tail_log "$LOG_DIR/$name.log"; die "$name did not become ready ($url)"
}

up() {
  infra
  local s
  for s in "${SERVICES[@]}"; do start_service "$s"; done
  for s in "${SERVICES[@]}"; do wait_service "$s"; done
  if observability; then bash "$ROOT/deploy/local/prometheus.sh" start; fi
  banner
}

banner() {
  cat <<TXT

  CXM platform is up (local mode)
    ingest        http://127.0.0.1:${PORTS[ingest]}    POST /v1/events, Segment API /v1/batch ...
    profile API   http://127.0.0.1:${PORTS[profile]}    /docs
    scoring       http://127.0.0.1:${PORTS[scoring]}    /readyz /metrics
    alerting      http://127.0.0.1:${PORTS[alerting]}    /docs
    Kafka         127.0.0.1:$KAFKA_PORT
    PostgreSQL    127.0.0.1:$PG_PORT  database=$PG_DB user=$PG_USER password=$PG_PASSWORD
    dev write key: dev-write-key     dev API token: dev-api-token   (local mode only)
    logs: $LOG_DIR
TXT
  if observability; then
    echo "    Prometheus    http://127.0.0.1:${CXM_PROMETHEUS_PORT:-9090}    (rules: deploy/prometheus/rules)"
  fi
  echo
}

down() {
  local s
  bash "$ROOT/deploy/local/prometheus.sh" stop
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    s=${SERVICES[$i]}; stop_pid "$RUN_DIR/$s.pid" "$s" 30
  done
  bash "$ROOT/deploy/local/kafka.sh" stop
  bash "$ROOT/deploy/local/postgres.sh" stop
}

run() {
  trap 'echo; log "stopping everything"; down; exit 0' INT TERM
  up
  log "following the service logs; Ctrl-C stops everything"
  local files=() s
  for s in "${SERVICES[@]}"; do files+=("$LOG_DIR/$s.log"); done
  tail -n 0 -F "${files[@]}" &
  wait $! || true
}

status() {
  bash "$ROOT/deploy/local/kafka.sh" status
  bash "$ROOT/deploy/local/postgres.sh" status
  if observability; then bash "$ROOT/deploy/local/prometheus.sh" status; fi
  local s
  for s in "${SERVICES[@]}"; do
    if pid_alive "$RUN_DIR/$s.pid"; then echo "$s: running (pid $(cat "$RUN_DIR/$s.pid")) on 127.0.0.1:${PORTS[$s]}"
    else echo "$s: stopped"; fi
  done
}

"${1:-status}"
