# One command runs the demo, one runs the tests; both build the virtualenv themselves.
# `make run` installs only what running needs; `make test` adds the developer tools.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080
# The editable install's build backend prints advice that does not apply to this layout.
QUIET_PIP := PYTHONWARNINGS=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: run test lint types bench bench-quick cluster clean

$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(QUIET_PIP) $(BIN)/python -m pip install -q -e . 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import agentchat_server, agentchat"
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(QUIET_PIP) $(BIN)/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import pytest, mypy, playwright"
	touch $(STAMP)

run: $(RUNTIME)
	mkdir -p data
	$(BIN)/agentchat serve --dev --demo --host $(HOST) --port $(PORT)

cluster: $(RUNTIME)
	$(BIN)/agentchat cluster

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
