# troth — quick start: `make run` (server on 127.0.0.1:8001, SQLite troth.db) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run dev test lint typecheck unit bench bench-sdk clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,examples]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/troth serve

dev: $(STAMP)
	$(BIN)/troth dev

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.server
	$(BIN)/python -m benchmarks.sdk

bench-sdk: $(STAMP)
	$(BIN)/python -m benchmarks.sdk

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
