# The platform's commands (see README.md). Every target installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

.PHONY: sync
sync: ## install the Python workspace (.venv) from uv.lock
	@bash deploy/local/python.sh

.PHONY: infra
infra: ## install and start Kafka (KRaft) and PostgreSQL only
	@bash deploy/local/stack.sh infra

.PHONY: run
run: ## install what is missing, start everything, follow the logs; Ctrl-C stops all
	@bash deploy/local/stack.sh run

.PHONY: up
up: ## the same in the background; returns once every service answers /readyz
	@bash deploy/local/stack.sh up

.PHONY: down
down: ## stop the services, Kafka and PostgreSQL
	@bash deploy/local/stack.sh down

.PHONY: status
status: ## what is running
	@bash deploy/local/stack.sh status

# A modest run that finishes in a couple of minutes; override e.g.
#   make demo DEMO_CUSTOMERS=2000 DEMO_WEEKS=8 DEMO_ARGS="--rate 500"
DEMO_CUSTOMERS ?= 200
DEMO_WEEKS ?= 6
DEMO_SEED ?= 7
DEMO_ARGS ?=

.PHONY: demo
demo: sync ## drive simulated customer journeys into the running platform (make up first)
	@$(PY) -m cxm_sim --customers $(DEMO_CUSTOMERS) --weeks $(DEMO_WEEKS) --seed $(DEMO_SEED) \
	  --ingest-url http://127.0.0.1:$${CXM_INGEST_PORT:-8001} \
	  --profile-url http://127.0.0.1:$${CXM_PROFILE_PORT:-8002} \
	  --scoring-url http://127.0.0.1:$${CXM_SCORING_PORT:-8003} \
	  --alerting-url http://127.0.0.1:$${CXM_ALERTING_PORT:-8004} $(DEMO_ARGS)

.PHONY: test
test: ## install what is missing and run the whole suite against the real Kafka and PostgreSQL
	@bash deploy/local/test.sh $(PYTEST_ARGS)

.PHONY: unit
unit: sync ## only the tests that need no Kafka or PostgreSQL
	@$(PY) -m pytest -q -m "not integration and not e2e" $(PYTEST_ARGS)

.PHONY: lint
lint: sync ## ruff (lint + format check)
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

.PHONY: bench
bench: ## run the benchmarks; results land in bench/results/
	@bash deploy/local/bench.sh

# At least 200,000 simulated events while every service is SIGKILLed again and again and the
# broker and the database are killed and restarted once each, all on a private Kafka and
# PostgreSQL (tools/chaos/README.md). Smaller: make chaos CHAOS_ARGS="--customers 300 --weeks 4"
CHAOS_ARGS ?= --customers 3000 --weeks 10 --rate 150 --kill-rounds 5 --drain-timeout 900

.PHONY: chaos
chaos: sync ## fault injection under load (kill -9); report in bench/results/chaos.json and .md
	@bash deploy/local/kafka.sh install && bash deploy/local/postgres.sh install
	@$(PY) -m cxm_chaos $(CHAOS_ARGS)

