# The two commands of the README: `make run` and `make test`. Both set up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= $(or $(CONNECT_HOST),127.0.0.1)
PORT ?= $(or $(CONNECT_PORT),8000)
WEB_WORKERS ?= $(or $(CONNECT_WEB_WORKERS),2)
PYTEST_ARGS ?=

.PHONY: run test test-postgres bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/flask --app wsgi connect init
	CONNECT_EMBEDDED_WORKER=$${CONNECT_EMBEDDED_WORKER:-1} \
	CONNECT_ALLOWED_SOURCE_NETWORKS=$${CONNECT_ALLOWED_SOURCE_NETWORKS-127.0.0.0/8,::1/128} $(BIN)/gunicorn --bind $(HOST):$(PORT) \
		--workers $(WEB_WORKERS) --threads 4 --error-logfile - wsgi:app

test: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The same suite against a PostgreSQL server (CI has one on 127.0.0.1:5432, database `test`).
test-postgres: $(VENV)/.installed
	CONNECT_DATABASE_URL=$${CONNECT_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test} \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/python -m bench.run

lint: $(VENV)/.installed
	$(BIN)/ruff check app tests scripts bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache
