# One command runs the demo, one runs the tests; both build the virtualenv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint types bench bench-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	mkdir -p data
	$(BIN)/agentchat serve --dev --demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check channels agents tests bench
	$(BIN)/ruff format --check channels agents tests bench

types: $(STAMP)
	mkdir -p build/typecheck
	ln -sfn ../../channels build/typecheck/agentchat_server
	ln -sfn ../../agents build/typecheck/agentchat
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
