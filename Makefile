# One command per habit. `make run` and `make test` each run `make setup` first (idempotent).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed

.PHONY: setup jars run demo test test-unit test-integration bench lint format typecheck check up down status clean

setup: $(VENV_STAMP) jars

$(VENV_STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "setup: Python 3.11 is required: no '$(PYTHON)' on PATH (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

jars: $(VENV_STAMP)
	@$(PY) -m infra.jars

run: setup
	$(VENV)/bin/ssa demo

test: setup
	$(VENV)/bin/pytest -q

test-unit: setup
	$(VENV)/bin/pytest -q -m "not integration"

test-integration: setup
	$(VENV)/bin/pytest -q -m integration

bench: setup
	$(PY) -m tests.bench

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(VENV_STAMP)
	$(VENV)/bin/mypy ingest detectors streams dashboards infra ssa

check: lint typecheck

up: setup
	$(VENV)/bin/ssa up

down: $(VENV_STAMP)
	$(VENV)/bin/ssa down

status: $(VENV_STAMP)
	$(VENV)/bin/ssa status

clean: down
	rm -rf .data
