#!/usr/bin/env bash
# Prometheus for the Docker-free stack, with the two exporters it scrapes besides the services:
# the consumer-lag exporter (python -m cxm_shared.lag) and Debian's PostgreSQL exporter.
#   prometheus.sh install   Debian's prometheus (+ promtool) and prometheus-postgres-exporter,
#                           when a binary is missing
#   prometheus.sh render    $DATA_DIR/prometheus/prometheus.yml from
#                           deploy/prometheus/prometheus.local.yml for the local ports
#   prometheus.sh start     install, render, start the exporters and Prometheus (background)
#   prometheus.sh stop | status
# The packages' own daemons are never left running: the install runs under a policy-rc.d that
# forbids starting services (unless the host has one already), and on a systemd host their
# units are disabled. Ours run as the calling user with their data under $DATA_DIR.
set -euo pipefail
source "$(dirname "$0")/common.sh"

PY=$ROOT/.venv/bin/python
PROM_PORT=${CXM_PROMETHEUS_PORT:-9090}
LAG_PORT=${CXM_LAG_EXPORTER_PORT:-8005}
PG_EXPORTER_PORT=${CXM_PG_EXPORTER_PORT:-9187}
PROM_HOME=$DATA_DIR/prometheus
CONF=$PROM_HOME/prometheus.yml
PACKAGES=(prometheus prometheus-postgres-exporter)
BINARIES=(/usr/bin/prometheus /usr/bin/promtool /usr/bin/prometheus-postgres-exporter)

installed() {
  local b
  for b in "${BINARIES[@]}"; do [ -x "$b" ] || return 1; done
}

install() {
  if installed; then return 0; fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "run as root or: apt-get install ${PACKAGES[*]}"
    sudo=sudo
  fi
  log "installing ${PACKAGES[*]} from the Debian packages (once)"
  export DEBIAN_FRONTEND=noninteractive
  local policy=/usr/sbin/policy-rc.d own_policy="" rc=0 unit
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    own_policy=1
  fi
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"; } \
    >"$LOG_DIR/apt-prometheus.log" 2>&1 || rc=$?
  if [ -n "$own_policy" ]; then $sudo rm -f "$policy"; fi
  [ "$rc" = 0 ] || { tail_log "$LOG_DIR/apt-prometheus.log"; die "apt-get install failed"; }
  if [ -d /run/systemd/system ]; then
    for unit in "${PACKAGES[@]}"; do $sudo systemctl disable --now "$unit" >/dev/null 2>&1 || true; done
  fi
  installed || die "the packages installed but a binary is missing: ${BINARIES[*]}"
}

render() {
  mkdir -p "$PROM_HOME"
  sed -e "s|@SCRAPE_INTERVAL@|${CXM_PROMETHEUS_SCRAPE_INTERVAL:-5s}|g" \
      -e "s|@RULES_DIR@|$ROOT/deploy/prometheus/rules|g" \
      -e "s|@INGEST_PORT@|${CXM_INGEST_PORT:-8001}|g" \
      -e "s|@PROFILE_PORT@|${CXM_PROFILE_PORT:-8002}|g" \
      -e "s|@SCORING_PORT@|${CXM_SCORING_PORT:-8003}|g" \
      -e "s|@ALERTING_PORT@|${CXM_ALERTING_PORT:-8004}|g" \
      -e "s|@LAG_EXPORTER_PORT@|$LAG_PORT|g" \
      -e "s|@KAFKA_JMX_PORT@|${CXM_KAFKA_JMX_PORT:-7071}|g" \
      -e "s|@PG_EXPORTER_PORT@|$PG_EXPORTER_PORT|g" \
      -e "s|@PROMETHEUS_PORT@|$PROM_PORT|g" \
      "$ROOT/deploy/prometheus/prometheus.local.yml" >"$CONF"
  echo "$CONF"
}

# launch NAME PORT READY_URL CMD...: start CMD in the background (its own session), record
# its pid, wait until READY_URL answers.
launch() {
  local name=$1 port=$2 url=$3 pid=$RUN_DIR/$1.pid i
  shift 3
  if pid_alive "$pid"; then log "$name already running (pid $(cat "$pid"))"; return 0; fi
  if port_open "$port"; then die "port $port for $name is taken by another process"; fi
  log "starting $name on 127.0.0.1:$port"
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$pid"
  for ((i = 0; i < 240; i++)); do
    pid_alive "$pid" || { tail_log "$LOG_DIR/$name.log"; die "$name exited during start"; }
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then log "$name ready"; return 0; fi
    sleep 0.25
  done
  tail_log "$LOG_DIR/$name.log"; die "$name did not become ready ($url)"
}

start() {
  install
  render >/dev/null
  CXM_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT CXM_LAG_EXPORTER_PORT=$LAG_PORT \
    launch lag-exporter "$LAG_PORT" "http://127.0.0.1:$LAG_PORT/healthz" \
    "$PY" -m cxm_shared.lag
  # The DSN goes through the environment, not the command line (visible to every user).
  DATA_SOURCE_NAME="postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB?sslmode=disable" \
    launch postgres-exporter "$PG_EXPORTER_PORT" "http://127.0.0.1:$PG_EXPORTER_PORT/metrics" \
    /usr/bin/prometheus-postgres-exporter --web.listen-address="127.0.0.1:$PG_EXPORTER_PORT" \
    --disable-settings-metrics
  launch prometheus "$PROM_PORT" "http://127.0.0.1:$PROM_PORT/-/ready" \
    /usr/bin/prometheus --config.file="$CONF" --storage.tsdb.path="$PROM_HOME/data" \
    --storage.tsdb.retention.time="${CXM_PROMETHEUS_RETENTION:-7d}" \
    --web.listen-address="127.0.0.1:$PROM_PORT"
}

stop() {
  stop_pid "$RUN_DIR/prometheus.pid" prometheus 30
  stop_pid "$RUN_DIR/postgres-exporter.pid" postgres-exporter 10
  stop_pid "$RUN_DIR/lag-exporter.pid" lag-exporter 10
}

status() {
  local name port
  for name in prometheus:$PROM_PORT lag-exporter:$LAG_PORT postgres-exporter:$PG_EXPORTER_PORT; do
    port=${name#*:}; name=${name%%:*}
    if pid_alive "$RUN_DIR/$name.pid"; then
      echo "$name: running (pid $(cat "$RUN_DIR/$name.pid")) on 127.0.0.1:$port"
    else echo "$name: stopped"; fi
  done
}

"${1:-status}"
