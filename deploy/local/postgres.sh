#!/usr/bin/env bash
# A private PostgreSQL cluster for the platform, no Docker.
#   postgres.sh install   install Debian's server package when the binaries are missing
#   postgres.sh start     initdb on first start, start on 127.0.0.1:$PG_PORT, create role+database
#   postgres.sh stop      fast shutdown
#   postgres.sh status
# PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user.
set -euo pipefail
source "$(dirname "$0")/common.sh"

PGDATA=${CXM_PG_DATA:-$DATA_DIR/postgres}
LOG=$LOG_DIR/postgres.log
# As root the cluster runs as `postgres`, which cannot enter a checkout below a private home
# (e.g. /root/...): then the cluster lives in a per-checkout folder under /var/tmp instead.
if [ "$(id -u)" = 0 ] && [ -z "${CXM_PG_DATA:-}" ] && id postgres >/dev/null 2>&1 \
   && ! runuser -u postgres -- test -x "$(dirname "$DATA_DIR")" 2>/dev/null; then
  PGDATA=/var/tmp/cxm-pg-$(printf '%s' "$DATA_DIR" | sha256sum | cut -c1-12)
  LOG=$PGDATA.log
fi

find_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir; return 0
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

install() {
  if find_bindir >/dev/null; then return 0; fi
  [ "$(id -u)" = 0 ] || die "PostgreSQL server binaries are missing; run as root or: apt-get install postgresql"
  log "installing PostgreSQL from the Debian packages (once)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$LOG_DIR/apt.log" 2>&1 || { tail_log "$LOG_DIR/apt.log"; die "apt-get update failed"; }
  apt-get install -y -qq --no-install-recommends postgresql postgresql-contrib >>"$LOG_DIR/apt.log" 2>&1 \
    || { tail_log "$LOG_DIR/apt.log"; die "apt-get install postgresql failed"; }
  find_bindir >/dev/null || die "postgresql installed but initdb not found"
}

# as_owner CMD...: run as the cluster owner (postgres when we are root)
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  install
  local bin; bin=$(find_bindir)
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    mkdir -p "$PGDATA"; chown postgres "$PGDATA"; touch "$LOG"; chown postgres "$LOG"
    # the postgres user must be able to reach the data directory
    chmod o+x "$DATA_DIR" "$(dirname "$DATA_DIR")" 2>/dev/null || true
  fi
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    log "initdb $PGDATA"
    local pwfile; pwfile=$(mktemp); echo "$PG_PASSWORD" >"$pwfile"; chmod 644 "$pwfile"
    as_owner "$bin/initdb" -D "$PGDATA" -U "$PG_USER" --pwfile="$pwfile" -A scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$LOG_DIR/initdb.log" 2>&1 \
      || { rm -f "$pwfile"; tail_log "$LOG_DIR/initdb.log"; die "initdb failed"; }
    rm -f "$pwfile"
    cat >>"$PGDATA/postgresql.conf" <<CONF
# cxm local defaults
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGDATA'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
CONF
  fi
  if as_owner "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    log "postgres already running"
  else
    if port_open "$PG_PORT"; then die "port $PG_PORT is taken by another process; set CXM_PG_PORT"; fi
    log "starting postgres on 127.0.0.1:$PG_PORT"
    as_owner "$bin/pg_ctl" -D "$PGDATA" -l "$LOG" -w -t 60 -o "-p $PG_PORT" start >/dev/null \
      || { tail_log "$LOG"; die "postgres did not start"; }
  fi
  PGPASSWORD=$PG_PASSWORD "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname='$PG_DB'" | grep -q 1 \
    || PGPASSWORD=$PG_PASSWORD "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$PG_DB"
}

stop() {
  local bin; bin=$(find_bindir) || return 0
  [ -f "$PGDATA/PG_VERSION" ] || return 0
  if as_owner "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    log "stopping postgres"
    as_owner "$bin/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
  fi
}

status() {
  local bin; bin=$(find_bindir) || { echo "postgres: not installed"; return 0; }
  if [ -f "$PGDATA/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    echo "postgres: running on 127.0.0.1:$PG_PORT (database $PG_DB, user $PG_USER)"
  else echo "postgres: stopped"; fi
}

"${1:-status}"
