# Two commands on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CRM_HOME ?= $(CURDIR)/.crm
export CRM_HOME

.PHONY: setup spark-setup superset-setup demo run test test-fast lint fmt ui bench lock clean

# The venv is rebuilt whenever the dependencies change; requirements.lock pins every package.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint requirements.lock --editable '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The Spark target's packages (dbt-spark, pyspark: about 450 MB), for the tests that build on
# a local Spark; the embedded default never needs them.
$(VENV)/.spark-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet --constraint requirements.lock --editable '.[dev,spark]'
	touch $@

spark-setup: $(VENV)/.spark-installed

# Superset lives in its own venv (it pins SQLAlchemy < 2 and pandas 2.1); the dashboard
# screenshots need playwright-core and, from the system, chromium and fonts-noto-cjk.
SUPERSET_VENV := .venv-superset
$(SUPERSET_VENV)/.installed: dashboards/superset-requirements.txt
	$(PYTHON) -m venv $(SUPERSET_VENV)
	$(SUPERSET_VENV)/bin/pip install --quiet -r dashboards/superset-requirements.txt
	touch $@

dashboards/screenshot/node_modules/.installed: dashboards/screenshot/package-lock.json
	cd dashboards/screenshot && npm ci --silent
	touch $@

superset-setup: $(SUPERSET_VENV)/.installed dashboards/screenshot/node_modules/.installed

demo: setup  ## generate 10,000 demo customers into a fresh CRM_HOME and run everything
	$(BIN)/crm demo --reset

run: setup  ## process whatever is in CRM_HOME's sources now
	$(BIN)/crm run

test: setup spark-setup superset-setup  ## the whole suite: ingest, real dbt builds, Dagster end to end, Superset, PostgreSQL, Spark
	$(BIN)/python -m pytest -n 2 --dist loadgroup

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

# `make bench BENCH=--scale`: the whole pipeline through Dagster and dbt at 100k, 1M and 3M
# customers, per stage, with the appended day and the plain-SQL baseline (hours, not minutes).
bench: setup  ## 100k and 1M customers, stage by stage; JSON under CRM_HOME/bench
	$(BIN)/crm bench $(BENCH)

lock: setup  ## re-pin after changing pyproject.toml's dependencies
	$(BIN)/pip freeze --exclude-editable | grep -v '^crm-warehouse' > requirements.lock

clean:
	rm -rf $(VENV) $(SUPERSET_VENV) dashboards/screenshot/node_modules .pytest_cache .ruff_cache
