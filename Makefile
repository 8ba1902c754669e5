# One entry point for people and CI. `make run` and `make test` work on a fresh machine:
# they create .venv, install the package with its dev tools, and (for tests) the pinned npm peers.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
CONFIG ?= configs/example.yaml

.PHONY: run test lint typecheck pytest bench conformance clean chromium

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/mcp-gateway serve --config $(CONFIG)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

# The console's browser tests drive Debian's Chromium; Playwright never downloads a browser.
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

pytest: $(BIN)/.installed node_modules/.installed chromium
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q

test: lint typecheck pytest

# The official MCP conformance suite (spec 2025-11-25 and 2026-07-28) against our fixture server, directly and through
# the gateway for every upstream setting (also in pytest); prints the README's tables.
conformance: $(BIN)/.installed node_modules/.installed
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python scripts/conformance.py

# On demand, never in CI: ~18 min on 2 cores; results land in benchmarks/results/ and the README.
bench: $(BIN)/.installed
	benchmarks/run.sh

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
