# marketjax: `make demo` trains the quickstart config, `make test` runs the suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench results clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/marketjax train configs/quickstart.yaml --overwrite

test: $(STAMP)
	$(BIN)/ruff check marketjax tests benchmarks scripts
	$(BIN)/python -m pytest -n 2 --dist loadfile tests

lint: $(STAMP)
	$(BIN)/ruff check marketjax tests benchmarks scripts
	$(BIN)/ruff format --check marketjax tests benchmarks scripts

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs results .pytest_cache
