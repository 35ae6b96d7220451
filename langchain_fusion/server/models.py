"""The aliases' chat models: `fusion_models()` on any backend, `local_fusion_models()` on
the embedded model. Their settings are the server's defaults for every request."""

from __future__ import annotations

from typing import Any

from langchain_fusion.chat_models import FUSION_ALIASES, ChatFusion
from langchain_fusion.local import (
    LOCAL_ANALYSIS_LIMITS,
    LOCAL_JUDGE_TOKENS,
    LOCAL_PANEL_SIZE,
    LOCAL_PANEL_TOKENS,
    LocalModelServer,
)

FUSION_MODELS: tuple[str, ...] = tuple(FUSION_ALIASES)
"""The aliases this server lists; any other model answers too (see `docs/server.md`)."""


def fusion_models(**settings: Any) -> dict[str, ChatFusion]:
    """One `ChatFusion` per alias, with the same `settings` (ChatFusion's fields).

    The backend is OpenRouter, or `OPENROUTER_BASE_URL` / `base_url` / `backend`, with the
    key from `OPENROUTER_API_KEY` / `api_key`. Raises `ValueError` on invalid settings.
    """
    return {alias: ChatFusion(model=alias, **settings) for alias in FUSION_MODELS}


def local_fusion_models(server: LocalModelServer, **settings: Any) -> dict[str, ChatFusion]:
    """The aliases on the embedded model: a panel of seeded seats, a judge, an outer model.

    The offline defaults of `create_local_fusion_graph` apply (short answers, a tight
    judge schema). A 135M model cannot be trusted to choose a tool, so deliberation is
    forced (`tool_choice="required"`) unless `settings` say otherwise.
    """
    backend = server.backend()
    name = server.model_name
    panel = [
        backend.chat_model(name, panel_index=index).model_copy(
            update={"max_tokens": LOCAL_PANEL_TOKENS}
        )
        for index in range(LOCAL_PANEL_SIZE)
    ]
    judge = backend.chat_model(name).model_copy(update={"max_tokens": LOCAL_JUDGE_TOKENS})
    defaults: dict[str, Any] = {
        "analysis_models": panel,
        "judge_model": judge,
        "outer_model": backend.chat_model(name),
        "backend": backend,
        "analysis_limits": LOCAL_ANALYSIS_LIMITS,
        "tool_choice": "required",
    }
    return fusion_models(**{**defaults, **settings})
