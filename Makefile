# Two entry points that work on a fresh machine with Python 3.11+ and make:
#   make run    installs into .venv and serves on 127.0.0.1:7447 (in-memory store)
#   make test   installs into .venv and runs lint, types and every test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck pytest test-js test-e2e soak bench lock clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

run: install
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

# Refresh both locks (the dev lock and the image's hashed lock) after changing
# dependencies in pyproject.toml.
lock:
	sh scripts/lock.sh

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
