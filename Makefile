# One entry point for set-up and every check. Each target creates .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SCALE ?= 300
READING ?= lenient
PORT ?= 3000
# One test worker more than cores: the end-to-end tests wait on sockets, subprocesses and
# services (measured: 2 workers keep 1.2 of 2 cores busy, 3 keep 1.6).
WORKERS ?= $(shell $(PYTHON) -c 'import os; print(len(os.sched_getaffinity(0)) + 1 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) + 1)')
SDK := analytics_assets_tests/vendor_sdk

.PHONY: help load test test-fast check lint types validate dev simulator benchmark benchmark-refresh benchmark-speed clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# The vendor's Node SDK, for test_vendor_sdk.py (skipped, saying so, where npm is missing).
$(SDK)/node_modules/.package-lock.json: $(SDK)/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix $(SDK) --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the vendor SDK test will be skipped (Debian: nodejs npm)"; fi

load: $(BIN)/.installed  ## full load from the local API simulator into data/simulated.duckdb
	$(BIN)/python -m analytics_assets.run_simulated --scale $(SCALE) --reading $(READING)

test: $(BIN)/.installed $(SDK)/node_modules/.package-lock.json  ## the whole offline test suite, one worker more than cores (WORKERS)
	$(BIN)/pytest -n $(WORKERS) --dist load --maxschedchunk 1

test-fast: $(BIN)/.installed  ## the unit tier only: pure logic, no server, no run (seconds)
	$(BIN)/pytest analytics_assets_tests/unit -n 0

lint: $(BIN)/.installed  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(BIN)/.installed  ## mypy
	$(BIN)/mypy

validate: $(BIN)/.installed  ## Dagster loads the definitions (`dg check defs`)
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs

check: lint types validate test-fast test  ## everything CI runs, the unit tier first

simulator: $(BIN)/.installed  ## the API simulator alone, in the foreground on port 8765
	$(BIN)/python -m analytics_assets.simulator --scale $(SCALE) --reading $(READING) --port 8765

dev: $(BIN)/.installed  ## the Dagster UI on PORT (3000), with the API simulator unless a base URL is configured
	$(BIN)/python -m analytics_assets.dev --port $(PORT) --scale $(SCALE) --reading $(READING)

benchmark: $(BIN)/.installed  ## every figure of docs/benchmarks.md, both scripts even if one misses (about 10 minutes)
	@status=0; $(MAKE) --no-print-directory benchmark-speed || status=1; \
	$(MAKE) --no-print-directory benchmark-refresh || status=1; exit $$status

benchmark-refresh: $(BIN)/.installed  ## requests per job vs. the full load, at 1x and 4x history
	$(BIN)/python benchmarks/refresh.py --scale 400

benchmark-speed: $(BIN)/.installed  ## full loads: event-heavy vs. plain dlt, 515k events, 100 ms per request
	$(BIN)/python benchmarks/speed.py

clean:  ## remove the virtualenv and local data
	rm -rf $(VENV) data
	find dagster_home -mindepth 1 ! -name dagster.yaml -exec rm -rf {} +
