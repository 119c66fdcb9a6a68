# One command per habit. `make run` and `make test` each run `make setup` first (idempotent).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
LOCK := requirements.lock
UV_VERSION := 0.13.8

.PHONY: setup lock jars ecs-spec run demo test test-unit test-integration bench toollab fuzz lint format typecheck check up down status clean

setup: $(VENV_STAMP) jars ecs-spec

# The virtualenv holds exactly the locked versions: a changed lock rebuilds it from scratch, so
# nothing left over from an older lock stays installed. One build at a time (flock): two makes
# started together on a fresh clone would otherwise install into one .venv at once and leave files
# of both urllib3 and urllib3-future in its urllib3 (an ImportError at the first test). The one
# that waited finds the stamp fresh and builds nothing.
$(VENV_STAMP): $(LOCK) pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "setup: Python 3.11 is required: no '$(PYTHON)' on PATH (set PYTHON=/path/to/python3.11)"; exit 1; }
	@mkdir -p .cache
	@flock .cache/venv.lock sh -ec '\
	  if [ $@ -nt $(LOCK) ] && [ $@ -nt pyproject.toml ]; then exit 0; fi; \
	  echo "setup: $(VENV) from $(LOCK)"; \
	  rm -rf $(VENV); \
	  $(PYTHON) -m venv $(VENV); \
	  $(VENV)/bin/pip install -q --disable-pip-version-check --require-hashes --no-deps -r $(LOCK); \
	  $(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .; \
	  touch $@'

# Re-resolve every dependency (pyproject's ranges, requirements-tools.in) to exact versions with
# hashes, using a pinned uv in a virtualenv of its own. Run on purpose; commit the new lock with
# the change that needed it.
lock:
	@test -x .cache/uv/bin/uv || { $(PYTHON) -m venv .cache/uv && .cache/uv/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION); }
	.cache/uv/bin/uv pip compile pyproject.toml requirements-tools.in --extra dev --generate-hashes \
		--python-version 3.11 --quiet --output-file $(LOCK)
	@echo "lock: $(LOCK) written; run make setup to install it"

jars: $(VENV_STAMP)
	@$(PY) -m infra.jars

# Elastic Common Schema's published field definitions (npm @elastic/ecs, pinned and checksummed)
# into .cache/ecs: the tests check every ECS field we write against them.
ecs-spec: $(VENV_STAMP)
	@$(PY) -m infra.ecs_spec

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

# The real attack tools against real servers in a network namespace, recorded and scored (root and
# Debian's packages of the tools: `python -m detectors.evaluation.toollab --check` names the missing).
# About 24 minutes and 2 GB of disk in TOOLLAB_DIR.
TOOLLAB_DIR ?= .data/toollab
toollab: setup
	$(PY) -m detectors.evaluation.toollab --out $(TOOLLAB_DIR)
	$(VENV)/bin/ssa evaluate --capture $(TOOLLAB_DIR)/argus.csv --format argus --cidr 10.77.1.0/24 \
		--name toollab-argus --out results/toollab-argus.json
	$(VENV)/bin/ssa evaluate --capture $(TOOLLAB_DIR)/netflow.csv --format nfdump --cidr 10.77.1.0/24 \
		--name toollab-netflow --out results/toollab-netflow.json
	cp $(TOOLLAB_DIR)/scenarios.json results/toollab-scenarios.json

# Coverage-guided fuzzing of every parser for FUZZ_SECONDS each; crashes in .cache/fuzz/<format>/.
FUZZ_SECONDS ?= 600
fuzz: $(VENV_STAMP)
	$(PY) -m tests.fuzz.run_all --seconds $(FUZZ_SECONDS)

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(VENV_STAMP)
	$(VENV)/bin/mypy ingest detectors awareness streams dashboards analyst infra ssa tests

check: lint typecheck

up: setup
	$(VENV)/bin/ssa up

down: $(VENV_STAMP)
	$(VENV)/bin/ssa down

status: $(VENV_STAMP)
	$(VENV)/bin/ssa status

clean: down
	rm -rf .data
