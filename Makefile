# tripwire: `make demo` to watch breakers trip and recover, `make test` to run every check.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[$*]'
	touch $@

$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

demo: $(VENV)/.installed-base
	$(BIN)/tripwire demo

test: lint typecheck pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

pytest: $(VENV)/.installed-test
	$(BIN)/pytest

bench: $(VENV)/.installed-bench $(VENV)/.installed-test
	$(BIN)/python bench/bench.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
