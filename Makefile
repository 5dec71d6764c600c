# The two commands of the README's quick start: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SERVE_STAMP := $(VENV)/.installed-serve
JS := clients/js
JS_STAMP := $(JS)/node_modules/.package-lock.json

.PHONY: serve test lint typecheck pytest jstest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[all]'
	touch $@

# What the default service runs, and nothing more: no torch, no test tools.
$(SERVE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --no-compile -e '.[safety]'
	touch $@

# The JS client's dev tools (TypeScript, esbuild, openapi-typescript), from the lockfile.
$(JS_STAMP): $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund

serve: $(SERVE_STAMP)
	$(BIN)/imagegate serve

test: $(STAMP) $(JS_STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy
	cd $(JS) && npm test
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts && $(BIN)/ruff format --check src tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

jstest: $(JS_STAMP)  # the JS client's unit tests; its live and browser tests run in pytest
	cd $(JS) && npm test

bench: $(STAMP)
	$(BIN)/python bench/sketch.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/batching.py
	$(BIN)/python bench/safety_eval.py
	$(BIN)/python bench/tenancy.py

clean:
	rm -rf $(VENV) imagegate-data .pytest_cache .mypy_cache .ruff_cache
