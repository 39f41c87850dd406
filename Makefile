# Every target sets up what it needs: a fresh clone runs `make run` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,otlp]'
	touch $(STAMP)

## run: the exporter on the default ledger (~/.multi-term/token_usage.json), bound to 127.0.0.1
run: $(STAMP)
	$(VENV)/bin/token-tracker serve

## test: install what the tests need (system packages when root), lint, then the whole suite
test: $(STAMP) system-deps
	$(VENV)/bin/ruff check exporter tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

system-deps:
	@sh scripts/install-system-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check exporter tests benchmarks
	$(VENV)/bin/ruff format --check exporter tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info exporter/*.egg-info
