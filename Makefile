# `make test` installs everything the tests need into .venv and runs the checks and the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test install lint typecheck pytest clean

test: install lint typecheck pytest

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"

lint:
	$(BIN)/ruff check sparktts_cache tests benchmarks
	$(BIN)/ruff format --check sparktts_cache tests benchmarks

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
