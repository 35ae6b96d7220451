"""The `langchain-fusion` command: a deliberation from the shell, or a fusion server.

`langchain-fusion "prompt"` runs a deliberation with live progress on stderr and prints
the answer, the analysis and the usage (`run.py`, `render.py`, `progress.py`);
`langchain-fusion serve` runs the fusion server (`serve.py`); `langchain-fusion mcp`
serves fusion to MCP clients (`mcp.py`); `langchain-fusion eval`
measures fusion against each panelist on your data (`langchain_fusion/eval/cli.py`, imported
only when `eval` is asked for). `app.py` holds the Typer app and the options its commands
share.
"""

from langchain_fusion.cli import mcp, run, serve
from langchain_fusion.cli.app import app

__all__ = ["app", "main", "mcp", "run", "serve"]


def main() -> None:
    """Console entry point."""
    app()
