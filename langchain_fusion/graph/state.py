"""The state of a deliberation, in one place: what flows between the graph's nodes."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

from langchain_core.messages import AnyMessage
from langgraph.graph import add_messages

from langchain_fusion.contract.result import (
    FailureReason,
    FusionAnalysis,
    FusionResult,
    PanelResponse,
    Source,
    TokenUsage,
)


@dataclass(frozen=True)
class PanelTask:
    """What one panelist node receives through `Send`: its seat and the conversation."""

    index: int
    messages: Sequence[AnyMessage]


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
    stopped: str | None = None
    """Why the run stopped this panelist, if it did: `budget` or `deadline`."""


@dataclass
class Verdict:
    """What the judge stage produced, whichever judge produced it."""

    analysis: FusionAnalysis | None = None
    failure: FailureReason | None = None
    error: str | None = None
    usage_by_model: dict[str, TokenUsage] = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)

    def spend(self, model: str, usage: TokenUsage) -> None:
        self.usage_by_model[model] = self.usage_by_model.get(model, TokenUsage()) + usage


@dataclass(frozen=True)
class CascadeState:
    """Where a cascade stands (graph/cascade.py): the first seats, or the escalation."""

    stage: Literal["first", "escalation"] = "first"
    agreed: bool | None = None
    """Whether the first seats agreed; None until the agreement check."""
    reason: str = ""
    first_verdict: Verdict | None = None
    """The judge's analysis of the first answers, kept (and billed) when it escalated."""
    escalated: bool = False


@dataclass
class InputState:
    """What a caller passes in: the conversation (system and developer messages included)."""

    messages: Annotated[list[AnyMessage], add_messages] = field(default_factory=list)


@dataclass
class FusionState(InputState):
    """Everything the nodes read and write."""

    panel_outcomes: Annotated[list[PanelOutcome], operator.add] = field(default_factory=list)
    """One entry per panelist, in completion order (parallel runs append)."""
    verdict: Verdict | None = None
    """What the judge stage produced; None when the judge was not asked."""
    result: FusionResult | None = None
    """The contract's result, written by the `conclude` node."""
    answer: str | None = None
    """The final answer, written by the synthesis node (standalone use only)."""
    synthesis_error: str | None = None
    cascade: CascadeState | None = None
    """The cascade's progress; None when the run has no cascade."""


@dataclass
class OutputState:
    """What a caller gets back."""

    messages: Annotated[list[AnyMessage], add_messages] = field(default_factory=list)
    result: FusionResult | None = None
    answer: str | None = None
    synthesis_error: str | None = None


def responses_of(outcomes: Iterable[PanelOutcome]) -> list[PanelResponse]:
    """The panelists that answered, in seat order."""
    return [
        PanelResponse(model=outcome.model, content=outcome.content)
        for outcome in sorted(outcomes, key=lambda outcome: outcome.index)
        if outcome.content is not None
    ]
