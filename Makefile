# `make help` lists the targets.
#
# Two environments, both built from uv.lock, so neither target ever strips the other's packages:
#   .venv      runtime + the dev group (pytest, mypy, ruff, moto, the SDKs...): test, lint, bench.
#   .venv-run  runtime dependencies only (`uv sync --no-dev`), exactly what the Docker image
#              installs: run, worker, migrate. The service is never started next to test tools.
# Each has its own stamp, remade when pyproject.toml or uv.lock changes; a fresh clone needs
# only python3 (uv itself is installed into .venv-tools when it is not on PATH).
SHELL := /bin/bash
UV ?= $(shell uv --version >/dev/null 2>&1 && command -v uv || echo .venv-tools/bin/uv)
VENV := .venv
RUN_VENV := .venv-run
PY := $(VENV)/bin/python

.PHONY: help install install-run run worker webhook-worker migrate test test-unit lint typecheck settings-docs bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv .venv-tools && .venv-tools/bin/pip install -q "uv==0.13.8"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --group dev
	@touch $@

$(RUN_VENV)/.synced: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(RUN_VENV) $(UV) sync --frozen --no-dev
	@touch $@

install: $(VENV)/.synced ## create .venv (runtime + dev group) from uv.lock

install-run: $(RUN_VENV)/.synced ## create .venv-run (runtime dependencies only) from uv.lock

run: install-run ## start the API with one worker beside it (HOST, PORT; embedded default)
	$(RUN_VENV)/bin/stt serve

worker: install-run ## start a worker process (uses DATABASE_URL / REDIS_URL)
	$(RUN_VENV)/bin/python -m worker

webhook-worker: install-run ## start a webhook worker (deliveries only; DATABASE_URL / REDIS_URL)
	$(RUN_VENV)/bin/python -m worker --webhooks

migrate: install-run ## upgrade the database schema
	$(RUN_VENV)/bin/stt migrate

test: install ## the whole suite: unit, integration (Postgres, Redis), end to end
	$(PY) -m pytest

test-unit: install ## fast unit tests only
	$(PY) -m pytest tests/unit

lint: install ## ruff and mypy (strict, the whole tree)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

typecheck: install ## mypy (strict) only
	$(VENV)/bin/mypy

settings-docs: install ## regenerate .env.example and the README settings table from core/settings.py
	$(PY) -m core.settings_docs --write

bench: install ## benchmarks: print figures, write bench/results.json
	$(PY) -m bench

clean: ## remove the virtual environments and local data
	rm -rf $(VENV) $(RUN_VENV) .venv-tools data
