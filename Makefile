# The two commands of the README's quick start, and the few others a developer needs.
#   make serve       install the service (deepfer[server], no TensorFlow) into .venv and start it with the shipped
#                    models on port 8000; every DEEPFER_* setting applies (DEEPFER_PORT=8001 make serve)
#   make test        the full suite, as CI runs it: lint and types, then every test. Installs the test environment
#                    (.venv-test: training and test extras) and, explicitly, the Debian packages some tests drive
#                    (nginx, podman, Chromium: docker/ci-deps.sh and tests/ci-browser-deps.sh, as root)
#   make test-fast   the unit tier (tests/unit: no servers, containers or network; under a minute) with lint and types
#   make lint        ruff (lint and format) and mypy --strict on the runtime package
# Two environments, so TensorFlow (3.6 GB) never lands in the one that serves.
PYTHON ?= python3.11
VENV ?= .venv
TEST_VENV ?= .venv-test
BIN := $(VENV)/bin
TEST_BIN := $(TEST_VENV)/bin

.PHONY: serve test test-fast lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(TEST_BIN)/python:
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_BIN)/python -m pip install -q --upgrade pip

$(VENV)/.serve-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[server]"
	touch $@

$(TEST_VENV)/.test-deps: pyproject.toml | $(TEST_BIN)/python
	$(TEST_BIN)/pip install -q -e ".[train,test]"
	touch $@

serve: $(VENV)/.serve-deps
	$(BIN)/deepfer serve

lint: $(TEST_VENV)/.test-deps
	$(TEST_BIN)/ruff check .
	$(TEST_BIN)/ruff format --check .
	$(TEST_BIN)/mypy

test-fast: lint
	$(TEST_BIN)/python -m pytest tests/unit

test: lint
	@echo "Installing the system packages some tests drive (nginx, podman, Chromium); needs root"
	bash docker/ci-deps.sh
	bash tests/ci-browser-deps.sh
	$(TEST_BIN)/python -m pytest

bench: $(VENV)/.serve-deps
	$(BIN)/python -m bench.classifier
	$(BIN)/python -m bench.http_load
