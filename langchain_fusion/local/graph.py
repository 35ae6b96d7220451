"""`create_local_fusion_graph`: a deliberation graph whose every stage runs on the embedded
model (its server: `local/server.py`)."""

from __future__ import annotations

from typing import Any

from langchain_fusion.contract.parameters import FusionParameters
from langchain_fusion.graph import create_fusion_graph
from langchain_fusion.local.defaults import (
    LOCAL_ANALYSIS_LIMITS,
    LOCAL_JUDGE_TOKENS,
    LOCAL_PANEL_SIZE,
    LOCAL_PANEL_TOKENS,
)
from langchain_fusion.local.server import LocalModelServer


def create_local_fusion_graph(
    server: LocalModelServer,
    parameters: FusionParameters | None = None,
    *,
    panel_size: int = LOCAL_PANEL_SIZE,
    synthesize: bool = True,
) -> Any:
    """A fusion graph whose panel, judge and synthesis all run on `server`.

    The panel is `parameters.analysis_models` (every slug served by the local model) or
    `panel_size` seats of it, each with its own seed. Per-stage token budgets suit a small
    model; `parameters.max_completion_tokens`, when given, overrides them.
    """
    parameters = parameters or FusionParameters()
    backend = server.backend()
    slugs = parameters.analysis_models or [server.model_name] * panel_size
    panel = [
        backend.chat_model(slug, panel_index=index).model_copy(
            update={"max_tokens": LOCAL_PANEL_TOKENS}
        )
        for index, slug in enumerate(slugs)
    ]
    judge = backend.chat_model(parameters.model or server.model_name).model_copy(
        update={"max_tokens": LOCAL_JUDGE_TOKENS}
    )
    return create_fusion_graph(
        parameters,
        panel=panel,
        judge=judge,
        backend=backend,
        synthesize=synthesize,
        analysis_limits=LOCAL_ANALYSIS_LIMITS,
    )
