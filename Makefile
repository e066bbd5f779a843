# Two commands on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CRM_HOME ?= $(CURDIR)/.crm
export CRM_HOME

.PHONY: setup demo run test test-fast lint fmt ui bench lock clean

# The venv is rebuilt whenever the dependencies change; requirements.lock pins every package.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint requirements.lock --editable '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup  ## generate 10,000 demo customers into a fresh CRM_HOME and run everything
	$(BIN)/crm demo --reset

run: setup  ## process whatever is in CRM_HOME's sources now
	$(BIN)/crm run

test: setup  ## the whole suite: generator, ingest, real dbt builds, Dagster end to end
	$(BIN)/python -m pytest -n 2

test-fast: setup  ## the quick loop: everything but the real dbt builds and end-to-end runs
	$(BIN)/python -m pytest -n 2 -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

ui: setup
	$(BIN)/crm ui

bench: setup  ## 100k and 1M customers; JSON under CRM_HOME/bench
	$(BIN)/crm bench --customers 100000,1000000

lock: setup  ## re-pin after changing pyproject.toml's dependencies
	$(BIN)/pip freeze --exclude-editable | grep -v '^crm-warehouse' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
