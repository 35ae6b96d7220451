"""Fusion as an MCP server (`langchain-fusion mcp`), on the official `mcp` SDK.

`create_mcp_server(FusionRunner(...))` builds it; `build_runner()` puts a runner on the
gateway's parts (its model catalog and its policy), so the MCP server and the HTTP
gateway resolve, check and run a deliberation the same way. Needs the `mcp` extra.
"""

from __future__ import annotations

from typing import Any

from langchain_fusion.mcp.runner import FusionRunner
from langchain_fusion.mcp.schema import ArgumentError, FusionOutput, FusionRun
from langchain_fusion.mcp.server import PRESETS_URI, create_mcp_server
from langchain_fusion.server.catalog import ModelCatalog
from langchain_fusion.server.models import fusion_models, local_fusion_models
from langchain_fusion.server.policy import Policy

__all__ = [
    "PRESETS_URI",
    "ArgumentError",
    "FusionOutput",
    "FusionRun",
    "FusionRunner",
    "build_runner",
    "create_mcp_server",
]


def build_runner(
    *, local: Any = None, policy: Policy | None = None, **settings: Any
) -> FusionRunner:
    """A runner on OpenRouter (or `OPENROUTER_BASE_URL` / `base_url`, any OpenAI-compatible
    server), or on the embedded model (`local`: a started `LocalModelServer`). `settings`
    are `ChatFusion` fields, the server's defaults for every call."""
    models = (
        local_fusion_models(local, **settings) if local is not None else fusion_models(**settings)
    )
    catalog = ModelCatalog(models)
    catalog.warm()  # a bad configuration fails here, before a client connects
    key = catalog.backend.api_key
    secrets = [key.get_secret_value()] if key is not None and key.get_secret_value() else []
    return FusionRunner(catalog=catalog, policy=policy or Policy(), secrets=secrets)
