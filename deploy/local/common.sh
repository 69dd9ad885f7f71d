# Sourced by the local infrastructure scripts: paths, ports and small helpers.
# Every value can be overridden from the environment.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DATA_DIR=${CXM_DATA_DIR:-$ROOT/.data}
RUN_DIR=$DATA_DIR/run
LOG_DIR=$DATA_DIR/logs
KAFKA_PORT=${CXM_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${CXM_KAFKA_CONTROLLER_PORT:-9093}
PG_PORT=${CXM_PG_PORT:-5433}
PG_DB=${CXM_PG_DB:-cxm}
PG_USER=${CXM_PG_USER:-cxm}
PG_PASSWORD=${CXM_PG_PASSWORD:-cxm-dev-password}
mkdir -p "$RUN_DIR" "$LOG_DIR"

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# pid_alive FILE -> 0 when the pid in FILE is a live process
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop_pid FILE NAME [SECONDS]: SIGTERM, wait, then SIGKILL; removes FILE.
stop_pid() {
  local file=$1 name=$2 wait_s=${3:-30} pid i
  if ! pid_alive "$file"; then rm -f "$file"; return 0; fi
  pid=$(cat "$file")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < wait_s * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return 0; }
    sleep 0.1
  done
  log "$name did not stop in ${wait_s}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$file"
}

tail_log() { [ -f "$1" ] && { log "last lines of $1:"; tail -n "${2:-30}" "$1" >&2; }; return 0; }
