"""`create_local_fusion_graph`: a deliberation graph whose every stage runs on the embedded
model (its server: `local/server.py`)."""

from __future__ import annotations

from typing import Any

from langchain_fusion.contract.parameters import FusionParameters
from langchain_fusion.contract.result import AnalysisLimits
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
    panel_tokens: int = LOCAL_PANEL_TOKENS,
    judge_tokens: int = LOCAL_JUDGE_TOKENS,
    analysis_limits: AnalysisLimits = LOCAL_ANALYSIS_LIMITS,
    timeout: float | None = None,
) -> Any:
    """A fusion graph whose panel, judge and synthesis all run on `server`.

    The panel is `parameters.analysis_models` (every slug served by the local model) or
    `panel_size` seats of it, each with its own seed. Per-stage token budgets suit a small
    model: `panel_tokens` for each panelist and for the synthesis, `judge_tokens` and
    `analysis_limits` for the judge; `timeout` (seconds per call; None: the server's
    default) is for machines where the model runs slowly.
    """
    parameters = parameters or FusionParameters()
    backend = server.backend() if timeout is None else server.backend(timeout=timeout)
    slugs = parameters.analysis_models or [server.model_name] * panel_size
    panel = [
        backend.chat_model(slug, panel_index=index).model_copy(update={"max_tokens": panel_tokens})
        for index, slug in enumerate(slugs)
    ]
    judge_slug = parameters.model or server.model_name
    judge = backend.chat_model(judge_slug).model_copy(update={"max_tokens": judge_tokens})
    writer = backend.chat_model(judge_slug).model_copy(update={"max_tokens": panel_tokens})
    return create_fusion_graph(
        parameters,
        panel=panel,
        judge=judge,
        outer_model=writer,
        backend=backend,
        synthesize=synthesize,
        analysis_limits=analysis_limits,
    )
