#!/usr/bin/env bash
# `make test`: install what is missing (Python deps, Kafka jars, PostgreSQL, Chromium for the
# console test, Prometheus), start Kafka and PostgreSQL, then run the whole suite against them.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
bash deploy/local/stack.sh infra
bash deploy/local/compose.sh
if [ -f deploy/local/chromium.sh ]; then bash deploy/local/chromium.sh; fi
# Prometheus + promtool and the PostgreSQL exporter for the observability tests.
bash deploy/local/prometheus.sh install
# Tests find the local infrastructure through these (cxm_shared/testing/infra.py).
export CXM_TEST_KAFKA_BOOTSTRAP=${CXM_TEST_KAFKA_BOOTSTRAP:-127.0.0.1:$KAFKA_PORT}
export CXM_TEST_DATABASE_URL=${CXM_TEST_DATABASE_URL:-postgresql+asyncpg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB}
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
