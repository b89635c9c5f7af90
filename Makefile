# Two commands for a fresh machine; each creates (or reuses) .venv and installs the project into it.
#   make run    set everything up and launch the app
#   make test   set everything up and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test train-digits lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/perceiver-gui

test: $(STAMP)
	$(BIN)/python -m ruff check perceiver_gui tests benchmarks main.py
	$(BIN)/python -m pytest

train-digits: $(STAMP)
	$(BIN)/perceiver-gui train --preset digits

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
