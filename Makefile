# Every target installs what it needs first; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= uv

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: sync
sync: ## install the Python workspace (.venv) from uv.lock
	@bash deploy/local/python.sh
