import pytest
from wire_schema import wire_schema_checked  # noqa: F401  (every test: the gateway's bytes)

pytest_plugins = ["langchain_fusion.testing.pytest_plugin", "tests.local_stand_in"]

# The suite's slowest files (seconds each: subprocesses, a real model, a browser), started
# first: `make test` runs three workers (pytest-xdist, whole files per worker) that take
# files in collection order, so these run side by side with the rest and no worker is
# left finishing one long file alone at the end. Order only: every test runs either way.
SLOWEST_FIRST = (
    "test_local_model.py",
    "test_bench.py",
    "test_server_processes.py",
    "test_packaging.py",
    "test_gateway_bench.py",
    "test_notebooks.py",
    "test_eval_resume.py",
    "test_server_fuzz.py",
    "test_playground.py",
    "test_server_ledger_postgres.py",
    "test_run_state.py",
    "test_cli.py",
    "test_mcp_transports.py",
    "test_soak.py",
    "test_langgraph_server.py",
    "test_eval_code.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the others, is kept
