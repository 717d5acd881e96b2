# The two commands a newcomer needs: `make run` (the platform, embedded SQLite, demo data)
# and `make test` (every quality gate and test). Both build .venv themselves from the
# hashed lock files in requirements/.
PYTHON ?= python3
# Test processes (pytest-xdist); each gets its own PostgreSQL database. 3 on the 2-core CI:
# much of the suite waits on PostgreSQL, SQLite fsyncs and server processes, so a third
# worker fills the cores (measured: 16 min with 2 workers).
TEST_WORKERS ?= 3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test coverage lint typecheck lock traceability clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24.3"

$(VENV)/.run-installed: requirements/run.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --require-hashes -r requirements/run.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev-installed: requirements/dev.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --require-hashes -r requirements/dev.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(VENV)/.run-installed $@

# The demo screens against OFAC's SDN list when its reference files are beside the
# repository (../shared/data/ofac/sdn-2021); otherwise load one with `tradeguard sanctions load`.
DEMO_SDN := $(wildcard $(abspath ../shared/data/ofac/sdn-2021))

run: $(VENV)/.run-installed
	$(if $(DEMO_SDN),TRADEGUARD_SANCTIONS_LIST_SOURCE=$(DEMO_SDN) )$(BIN)/tradeguard serve --demo $(SERVE_ARGS)

test: $(VENV)/.dev-installed
	@scripts/ensure-test-tools.sh
	$(BIN)/python scripts/audit_dependencies.py
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/traceability.py --check
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

# The tests with line and branch coverage (slower: kept out of `make test` to hold CI's budget).
coverage: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy && $(BIN)/lint-imports

traceability: $(VENV)/.dev-installed
	$(BIN)/python scripts/traceability.py --write

# Regenerate the lock files after changing dependencies in pyproject.toml (needs uv).
lock:
	uv pip compile pyproject.toml --python-version 3.11 --generate-hashes -q -o requirements/run.lock
	uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -q -o requirements/dev.lock
	uv pip compile requirements/sslyze.in --python-version 3.11 --generate-hashes -q -o requirements/sslyze.lock
	uv pip compile requirements/moto.in --python-version 3.11 --generate-hashes -q -o requirements/moto.lock
	uv pip compile requirements/pip-audit.in --python-version 3.11 --generate-hashes -q -o requirements/pip-audit.lock

clean:
	rm -rf $(VENV) .venv-tools .pytest_cache .mypy_cache .ruff_cache .coverage
