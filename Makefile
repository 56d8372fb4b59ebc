# scalper: every target builds or refreshes .venv first (python3.12 is required).
SHELL := /bin/bash
PYTHON ?= python3.12
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1
export RAY_AUTH_MODE ?= disabled

.PHONY: run test bench lint venv clean

run: $(STAMP)
	$(BIN)/scalper train all --bootstrap --config config.json
	$(BIN)/scalper run --config config.json

test: $(STAMP)
	@sh tests/setup_browser.sh
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if ! command -v $(PYTHON) >/dev/null 2>&1 || ! $(PYTHON) -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1; then \
		echo "error: '$(PYTHON)' (Python >= 3.12) was not found." >&2; \
		echo "       pandas_ta 0.4.71b0 needs Python 3.12. Install it (e.g. 'pyenv install 3.12'," >&2; \
		echo "       apt-get install python3.12) or run 'make PYTHON=/path/to/python3.12'." >&2; \
		exit 1; \
	fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
