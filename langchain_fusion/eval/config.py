"""`EvalConfig`: what one evaluation runs, and how."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool
from rich.console import Console

from langchain_fusion import FusionParameters, OpenAICompatibleBackend


@dataclass
class EvalConfig:
    """One evaluation: the panel, the arms, the grader, the limits.

    `parameters` are the fusion parameters every arm shares (temperature,
    `max_completion_tokens`, `max_tool_calls`, `tools`, ...); `limits` the pipeline's
    reliability limits (`deadline`, ...); `prices` USD per token by model,
    `{"m": {"prompt": ..., "completion": ...}}`, for backends that report no cost.
    """

    models: Sequence[str]
    judge: str | None = None
    arms: Sequence[str] | None = None
    """Kinds of arm: `single`, `fusion`, `self-fusion`, `vote`, `cascade`; None: all that
    apply (the cascade when `cascade_first` is set)."""
    self_fusion: str | None = None
    judge_variants: bool = False
    cascade_first: int | None = None
    """The cascade arm's first seats (the panel's first k models)."""
    cascade_rule: str | None = None
    """The cascade arm's agreement rule (`analysis`, `exact`, `normalised`, `numeric`)."""
    grader: str | None = None
    grader_model: str | None = None
    instructions: str | None = None
    """A system message sent with every question, to every arm."""
    parameters: FusionParameters | Mapping[str, Any] | None = None
    backend: OpenAICompatibleBackend | None = None
    research_tools: Sequence[BaseTool] | None = None
    limits: Mapping[str, Any] | None = None
    prices: Mapping[str, Mapping[str, float]] | None = None
    concurrency: int = 4
    max_cost: float | None = None
    seed: int = 0
    out_dir: str | Path | None = None
    retry_errors: bool = False
    code_timeout: float = 10.0
    langsmith: bool | None = None
    """Record each arm as a LangSmith experiment; None: when `LANGSMITH_API_KEY` is set."""
    langsmith_dataset: str | None = None
    langsmith_client: Any = None
    progress: bool = False
    console: Console | None = None
    analysis_limits: Any = None
    """Tighter bounds on the judge's schema (small local judges)."""
    setup: dict[str, Any] = field(default_factory=dict)
    """Anything else that identifies the run (data file, sample), kept in results.json."""


class EvalConfigError(ValueError):
    """The evaluation cannot run as configured; raised before any model is called."""
