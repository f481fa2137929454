# Two commands: `make run` (the product on SQLite with demo data, served by gunicorn) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := app

.PHONY: run test lint format translations system-deps

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

translations: $(VENV)/.installed
	$(BIN)/pybabel compile -d translations 2>&1 | grep -v "^compiling" || true

run: $(VENV)/.installed translations
	$(BIN)/flask db upgrade
	$(BIN)/flask seed --demo --first-run-only
	SWEEP_INTERVAL_SECONDS=$${SWEEP_INTERVAL_SECONDS:-60} $(BIN)/gunicorn -c deploy/gunicorn.conf.py 'app:create_app()'

system-deps:
	bash scripts/system-deps.sh

test: $(VENV)/.installed-dev translations system-deps
	bash scripts/test.sh

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
