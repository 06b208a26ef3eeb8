# The two commands of the README are `make demo` and `make test`; everything is installed
# from pyproject.toml into .venv, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/hlmm demo --out out/demo

# mypy first (~25 s): it reads every module, including paths no test reaches
test: setup
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider

bench: setup
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/hlmm bench --json out/bench.json

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) out .pytest_cache
