"""No module of the package imports a private name of LangGraph or LangChain.

A private name (a module or an attribute whose name starts with `_`) of `langgraph`,
`langchain_core` or `langchain_openai` can change in any release without notice: the
package uses their public extension points only. Every module's syntax tree is walked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import langchain_fusion

GUARDED = ("langgraph", "langchain_core", "langchain_openai")
PACKAGE = Path(langchain_fusion.__file__).parent


def private_imports(source: str) -> list[str]:
    """The private names of `GUARDED` packages that `source` imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
            found += [m for m in modules if _guarded(m) and _private(m.split("."))]
        elif isinstance(node, ast.ImportFrom) and node.module and _guarded(node.module):
            parts = node.module.split(".")
            names = [alias.name for alias in node.names]
            if _private(parts) or any(name.startswith("_") for name in names):
                found.append(f"{node.module}: {', '.join(names)}")
    return found


def _guarded(module: str) -> bool:
    return module.split(".")[0] in GUARDED


def _private(parts: list[str]) -> bool:
    return any(part.startswith("_") for part in parts)


def test_the_check_finds_private_imports() -> None:
    assert private_imports("from langgraph._internal._constants import CONF") != []
    assert private_imports("from langchain_core.tracers import _streaming") != []
    assert private_imports("import langchain_openai.chat_models._compat") != []
    assert private_imports("from langchain_openai.chat_models.base import _convert") != []
    assert private_imports("from langgraph.config import get_stream_writer") == []
    assert private_imports("from pydantic import _internal") == []  # not guarded


def test_no_module_imports_a_private_name() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 50
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in modules
        if (found := private_imports(path.read_text()))
    }
    assert offenders == {}
