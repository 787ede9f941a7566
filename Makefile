# `make test` installs everything the tests need into .venv and runs the checks and the tests.
# `make test-fast` does the same but leaves out the tests marked slow (pytest -m "not slow").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

DEMO_TEXT := examples/texts/founding-documents.txt
DEMO_CACHE := .demo-cache
ENGINE ?= espeak

.PHONY: demo test test-fast install lint typecheck pytest pytest-fast clean

# The main job: synthesise a 2,900-word text through a fresh cache twice; the second run must be
# served entirely from the cache (--expect-cached fails it otherwise). Leaves demo.wav.
# `make demo ENGINE=piper` runs the same job on Piper, a neural voice (the extra is the engine's).
demo: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(ENGINE)]"
	rm -rf $(DEMO_CACHE)
	$(BIN)/sparktts-cache --cache-dir $(DEMO_CACHE) synth --engine $(ENGINE) --file $(DEMO_TEXT) -o demo.wav
	$(BIN)/sparktts-cache --cache-dir $(DEMO_CACHE) synth --engine $(ENGINE) --file $(DEMO_TEXT) -o demo.wav --expect-cached

test: install lint typecheck pytest

# The edit-test loop: every check, and every test but those marked slow (subprocesses, stress,
# kill and multi-process runs). `make test` runs them all, as CI does.
test-fast: install lint typecheck pytest-fast

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"

lint:
	$(BIN)/ruff check sparktts_cache tests benchmarks examples
	$(BIN)/ruff format --check sparktts_cache tests benchmarks examples

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

pytest-fast:
	$(BIN)/pytest -m "not slow"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis $(DEMO_CACHE) demo.wav
