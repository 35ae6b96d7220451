"""The `langchain-fusion` command: a deliberation from the shell, or a fusion server.

`langchain-fusion "prompt"` runs a deliberation with live progress on stderr and prints
the answer, the analysis and the usage (`run.py`, `render.py`, `progress.py`);
`langchain-fusion serve` runs the fusion server (`serve.py`). `app.py` holds the Typer app
and the options both share.
"""

from langchain_fusion.cli import run, serve
from langchain_fusion.cli.app import app

__all__ = ["app", "main", "run", "serve"]


def main() -> None:
    """Console entry point."""
    app()
