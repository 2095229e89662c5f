# The two commands of the README's quick start, and the few others a developer needs.
#   make serve   install the service (deepfer[server], no TensorFlow) and start it with the shipped models on port 8000; every
#                DEEPFER_* setting applies (DEEPFER_PORT=8001 make serve)
#   make test    install everything the tests need (training extra, test tools, Debian packages) and run them
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.serve-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[server]"
	touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[train,test]"
	touch $@ $(VENV)/.serve-deps

serve: $(VENV)/.serve-deps
	$(BIN)/deepfer serve

test: $(VENV)/.test-deps
	bash docker/ci-deps.sh
	bash tests/ci-browser-deps.sh
	$(BIN)/python -m pytest

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.serve-deps
	$(BIN)/python -m bench.classifier
	$(BIN)/python -m bench.http_load
