#!/usr/bin/env bash
# `make bench`: every benchmark script in bench/ (each measures its figures beside a bare
# baseline in the same run and writes bench/results/<name>.json), then the summary table.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
bash deploy/local/stack.sh infra
# The bench scripts read these (the server they create scratch databases and topics on).
export CXM_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
export CXM_BENCH_DATABASE_URL=postgresql+asyncpg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
export CXM_BENCH_POSTGRES=$CXM_BENCH_DATABASE_URL
mkdir -p bench/results
status=0
for script in bench/*_bench.py; do
  [ -e "$script" ] || continue
  log "running $script"
  .venv/bin/python "$script" || { log "FAILED: $script"; status=1; }
done
if [ -f bench/report.py ]; then .venv/bin/python bench/report.py || status=1; fi
exit "$status"
