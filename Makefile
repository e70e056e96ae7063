# Two entry points that work on a fresh machine with Python 3.11+ and make:
#   make run    installs the daemon into .venv and serves on 127.0.0.1:7447 (in-memory store)
#   make test   installs the development tools into .venv and runs lint, types and every test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two installs from the same lock, both of the two distributions (client/, server/),
# editable: serving needs only them; everything else (tests, lint, types, benchmarks)
# also the Redis extra and the `dev` group of the workspace's pyproject.toml.
STAMP := $(VENV)/.installed
SERVE_STAMP := $(VENV)/.installed-serve

.PHONY: install install-serve run test lint typecheck pytest test-js test-e2e soak bench lock clean

install: $(STAMP)

install-serve: $(SERVE_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

PROJECTS := pyproject.toml client/pyproject.toml server/pyproject.toml requirements.lock

$(STAMP): $(PROJECTS) | $(BIN)/python
	$(BIN)/python -m pip install -q -c requirements.lock -e ./client -e './server[redis]' \
		--group dev
	touch $(STAMP)

$(SERVE_STAMP): $(PROJECTS) | $(BIN)/python
	$(BIN)/python -m pip install -q -c requirements.lock -e ./client -e ./server
	touch $(SERVE_STAMP)

# A development install (a superset) serves as it is.
run: $(if $(wildcard $(STAMP)),$(STAMP),$(SERVE_STAMP))
	$(BIN)/livereplay serve

lint: install
	$(BIN)/ruff check client server tests bench
	$(BIN)/ruff format --check client server tests bench

typecheck: install
	$(BIN)/mypy

pytest: install
	sh scripts/ensure-redis.sh
	$(BIN)/pytest -q

# The JavaScript reader (Node's test runner) and the inspector in headless Chromium.
test-js: install
	sh scripts/test-js.sh

test-e2e: install
	sh scripts/test-e2e.sh

test: lint typecheck pytest test-js test-e2e

# The fault suite's soak versions (docs/RELIABILITY.md): longer, more faults and readers,
# bounded to 20 minutes in all; prints the summary table and writes artifacts/faults.json.
soak: install
	sh scripts/ensure-redis.sh
	LIVEREPLAY_SOAK=1 timeout 1200 $(BIN)/pytest -q tests/faults -o timeout=300

bench: install
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.writer_bench

# Refresh both locks (the dev lock and the image's hashed lock) after changing
# dependencies in a pyproject.toml.
lock:
	sh scripts/lock.sh

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
