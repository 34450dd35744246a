# The everyday commands. `make install` once, then `make run` (the main job) or `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test test-slow lint format bench worker beat flower serve clean

install: $(BIN)/paperless-connector

$(BIN)/paperless-connector: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: install
	$(BIN)/paperless-connector run-demo

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy config tasks worker

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m bench.run

worker: install
	$(BIN)/celery -A worker worker -Q control,pages --loglevel INFO

beat: install
	$(BIN)/celery -A worker beat --loglevel INFO

flower: install
	$(BIN)/celery -A worker flower

serve: install
	$(BIN)/paperless-connector serve

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
