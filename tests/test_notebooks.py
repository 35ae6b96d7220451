"""The notebooks run offline, top to bottom, and are stored without outputs.

Each notebook starts its own scripted OpenAI-compatible server on 127.0.0.1, so executing
it needs no key and no network. The kernel is this virtual environment's Python (the
`python3` kernel spec, whose `python` jupyter_client replaces with `sys.executable`), and
the first cell the test adds checks that. `04_embedded_model.ipynb` runs SmolLM2 in
process and takes from about fifteen seconds (idle) to a few minutes (busy) on two cores:
it runs only with `FUSION_NOTEBOOK_LOCAL=1`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
EMBEDDED_MODEL_NOTEBOOK = "04_embedded_model.ipynb"
OFFLINE_NOTEBOOKS = [path for path in NOTEBOOKS if path.name != EMBEDDED_MODEL_NOTEBOOK]
CELL_TIMEOUT_S = 60
ALLOWED_NOTEBOOK_METADATA = {"kernelspec", "language_info"}


def kernel_environment() -> dict[str, str]:
    """This process's environment, minus anything that could reach a real service."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENROUTER_", "LANGSMITH_", "LANGCHAIN_", "OPENAI_"))
    }
    environment["LANGSMITH_TRACING"] = "false"
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    return environment


def execute(
    path: Path,
    extra_environment: dict[str, str] | None = None,
    *,
    cell_timeout: int = CELL_TIMEOUT_S,
) -> Any:
    """Run every cell of the notebook at `path` in a fresh kernel; raise on the first error."""
    notebook = nbformat.read(path, as_version=4)
    # The kernel must be this environment's Python, where the package is installed.
    check = nbformat.v4.new_code_cell(
        f"import sys\nassert sys.prefix == {sys.prefix!r}, sys.prefix",
    )
    notebook.cells.insert(0, check)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=cell_timeout,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute(env={**kernel_environment(), **(extra_environment or {})})
    return notebook


def test_there_are_notebooks_and_the_readme_lists_them() -> None:
    assert OFFLINE_NOTEBOOKS, "no notebooks found"
    readme = (NOTEBOOKS_DIR / "README.md").read_text()
    for path in NOTEBOOKS:
        assert path.name in readme, f"notebooks/README.md does not mention {path.name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert set(notebook.metadata) <= ALLOWED_NOTEBOOK_METADATA, set(notebook.metadata)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    for index, cell in enumerate(notebook.cells):
        assert cell.metadata == {}, f"cell {index} has metadata {dict(cell.metadata)}"
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} has outputs"
            assert cell.execution_count is None, f"cell {index} has an execution count"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", OFFLINE_NOTEBOOKS, ids=[path.name for path in OFFLINE_NOTEBOOKS])
def test_notebook_runs_offline(path: Path) -> None:
    notebook = execute(path)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code_cells)
    errors = [
        output for cell in code_cells for output in cell.outputs if output.output_type == "error"
    ]
    assert errors == []
    printed = "".join(output.get("text", "") for cell in code_cells for output in cell.outputs)
    assert printed.strip(), "the notebook printed nothing"


@pytest.mark.local_model
@pytest.mark.timeout(600)
@pytest.mark.skipif(
    os.environ.get("FUSION_NOTEBOOK_LOCAL") != "1",
    reason="slow (15 s to minutes on two cores): set FUSION_NOTEBOOK_LOCAL=1 to run it",
)
def test_embedded_model_notebook_runs() -> None:
    pytest.importorskip("xllamacpp")
    from langchain_fusion.local import LocalModelUnavailable, smollm2_path

    try:
        smollm2_path()
    except LocalModelUnavailable as error:
        pytest.skip(str(error))
    execute(NOTEBOOKS_DIR / EMBEDDED_MODEL_NOTEBOOK, cell_timeout=540)
