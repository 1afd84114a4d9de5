# One entry point for people and CI. `make demo` and `make test` install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help install system-deps demo test lint format typecheck pytest bench clean

help:
	@echo "make demo   - install, ingest real traces, train, publish, serve on http://127.0.0.1:8000"
	@echo "make test   - install (Python + Debian packages), lint, type-check and run the tests"
	@echo "make bench  - run the benchmarks under benchmarks/ (slow)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

system-deps:
	@command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || { \
		echo "installing Debian packages: prometheus"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian packages: chromium (dashboard browser test)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: install
	$(BIN)/forecaster demo

lint: install
	$(BIN)/ruff check forecaster tests benchmarks
	$(BIN)/ruff format --check forecaster tests benchmarks

format: install
	$(BIN)/ruff format forecaster tests benchmarks
	$(BIN)/ruff check --fix forecaster tests benchmarks

typecheck: install
	$(BIN)/mypy

pytest: install system-deps
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test: lint typecheck pytest

bench: install system-deps
	@command -v wrk >/dev/null 2>&1 || { \
		echo "installing Debian packages: wrk (serving and soak benchmarks)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) benchmarks/accuracy.py

clean:
	rm -rf .forecaster models/mlflow.db models/artifacts models/cache .pytest_cache .mypy_cache

proto: install
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
		forecaster/scaler/externalscaler.proto
