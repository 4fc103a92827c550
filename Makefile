# `make help` lists the targets. Everything runs from the locked virtual environment.
SHELL := /bin/bash
UV ?= $(shell uv --version >/dev/null 2>&1 && command -v uv || echo .venv-tools/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help install run worker migrate test test-unit lint typecheck bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv .venv-tools && .venv-tools/bin/pip install -q "uv==0.13.8"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

install: $(VENV)/.synced ## create .venv from uv.lock

run: install ## start the API with one worker beside it (HOST, PORT; embedded default)
	$(VENV)/bin/stt serve

worker: install ## start a worker process (uses DATABASE_URL / REDIS_URL)
	$(PY) -m worker

migrate: install ## upgrade the database schema
	$(VENV)/bin/stt migrate

test: install ## the whole suite: unit, integration (Postgres, Redis), end to end
	$(PY) -m pytest

test-unit: install ## fast unit tests only
	$(PY) -m pytest tests/unit

lint: install ## ruff and mypy (strict)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install ## benchmarks: print figures, write bench/results.json
	$(PY) -m bench

clean: ## remove the virtual environments and local data
	rm -rf $(VENV) .venv-tools data
