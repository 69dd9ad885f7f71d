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

