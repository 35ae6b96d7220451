"""The state of a deliberation, in one place: what flows between the graph's nodes."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

from langchain_core.messages import AnyMessage
from langgraph.graph import add_messages

from langchain_fusion.result import (
    FailureReason,
    FusionAnalysis,
    FusionResult,
    Source,
    TokenUsage,
)


@dataclass(frozen=True)
class PanelTask:
    """What one panelist node receives through `Send`: its seat and the conversation."""

    index: int
    messages: Sequence[AnyMessage]
    run_key: str | None = None
    """The run's deadline, quorum and budget ledger (`limits.RUNS`)."""


@dataclass(frozen=True)
class PanelOutcome:
    """One panelist's answer or failure. Exactly one of `content` and `error` is set."""

    index: int
    model: str
    """The concrete model that answered (as the backend reports it), else the slug."""
    content: str | None = None
    error: str | None = None
    status_code: int | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)
    sources: tuple[Source, ...] = ()
    """Pages this panelist retrieved while researching."""


@dataclass
class InputState:
    """What a caller passes in: the conversation (system and developer messages included)."""

    messages: Annotated[list[AnyMessage], add_messages] = field(default_factory=list)


@dataclass
class FusionState(InputState):
    """Everything the nodes read and write."""

    run_key: str | None = None
    """Where the run's deadline, quorum clock and budget ledger live (`limits.RUNS`)."""
    panel_outcomes: Annotated[list[PanelOutcome], operator.add] = field(default_factory=list)
    """One entry per panelist, in completion order (parallel runs append)."""
    analysis: FusionAnalysis | None = None
    judge_failure: FailureReason | None = None
    judge_error: str | None = None
    result: FusionResult | None = None
    """The contract's result, written by the judge node."""
    answer: str | None = None
    """The final answer, written by the synthesis node (standalone use only)."""
    synthesis_error: str | None = None


@dataclass
class OutputState:
    """What a caller gets back."""

    messages: Annotated[list[AnyMessage], add_messages] = field(default_factory=list)
    result: FusionResult | None = None
    answer: str | None = None
    synthesis_error: str | None = None
