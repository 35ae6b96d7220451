"""The fusion graph that `langgraph.json` serves (`langgraph dev`, LangGraph Platform).

`langgraph.json` names the factory `make_graph`: the graph is built on the server's first
use (not when this module is imported), once, from the environment:

- `OPENROUTER_API_KEY`: the key for every panel, judge and synthesis call (unset: the
  calls fail with 401).
- `OPENROUTER_BASE_URL`: any OpenAI-compatible endpoint (vLLM, llama.cpp, a proxy);
  default `https://openrouter.ai/api/v1`.
- `FUSION_PARAMETERS`: the hosted service's JSON, in either form (the server tool
  `{"type": "openrouter:fusion", "parameters": {...}}` or a bare parameters object),
  loaded with `FusionParameters.from_json`; default the `general-high` preset.

A bad `FUSION_PARAMETERS` fails the build with `FusionParameterError`, so the server
refuses to serve a graph nobody asked for. The served graph takes
`{"messages": [...]}` and returns `messages` (with the final answer), `result` (the
contract's JSON) and `answer`; progress events stream on `stream_mode="custom"`.

Example (`langgraph dev`, then with `langgraph-sdk`)::

    client = get_client(url="http://127.0.0.1:2024")
    async for part in client.runs.stream(
        None, "fusion", input={"messages": [{"role": "user", "content": "..."}]},
        stream_mode=["custom", "values"],
    ):
        ...
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

from langchain_fusion.backends import OpenAICompatibleBackend
from langchain_fusion.contract.parameters import FusionParameters
from langchain_fusion.graph import FusionGraph, create_fusion_graph

PARAMETERS_ENV = "FUSION_PARAMETERS"
"""The environment variable holding the hosted service's parameter JSON."""

__all__ = ["PARAMETERS_ENV", "graph_from_env", "make_graph", "parameters_from_env"]


def parameters_from_env(environ: Mapping[str, str] | None = None) -> FusionParameters:
    """`FUSION_PARAMETERS` loaded with `FusionParameters.from_json`; defaults when unset.

    Raises `FusionParameterError` (a `ValueError`) when the variable is set but invalid.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(PARAMETERS_ENV, "").strip()
    return FusionParameters.from_json(raw) if raw else FusionParameters()


def graph_from_env(environ: Mapping[str, str] | None = None) -> FusionGraph:
    """The standalone fusion graph (panel, judge, synthesis) configured from `environ`.

    The backend reads `OPENROUTER_BASE_URL` and `OPENROUTER_API_KEY`; the parameters come
    from `FUSION_PARAMETERS`. No checkpointer: the LangGraph server brings its own.
    """
    environ = os.environ if environ is None else environ
    backend_settings: dict[str, str] = {}
    if base_url := environ.get("OPENROUTER_BASE_URL"):
        backend_settings["base_url"] = base_url
    if api_key := environ.get("OPENROUTER_API_KEY"):
        backend_settings["api_key"] = api_key
    backend = OpenAICompatibleBackend.model_validate(backend_settings)
    return create_fusion_graph(parameters_from_env(environ), backend=backend, name="fusion")


def make_graph(config: Any = None) -> FusionGraph:
    """The factory `langgraph.json` names (`./langchain_fusion/deployment.py:make_graph`):
    the graph of this process's environment, built on first use and then reused (the
    server may call a factory for every run; `config`, the run's, changes nothing)."""
    del config
    return _environment_graph()


@functools.cache
def _environment_graph() -> FusionGraph:
    return graph_from_env()


def __getattr__(name: str) -> Any:
    # `deployment.graph`, as before the factory: the same graph, built on first access.
    if name == "graph":
        return make_graph()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
