"""The result of a deliberation, exactly as the hosted fusion tool returns it.

`FusionAnalysis` doubles as the judge's structured-output schema. Its lists carry
`maxItems` and its strings `maxLength`, so that grammar-constrained decoders (llama.cpp's
`json_schema`) have a finite language to generate, and no judge can answer without end.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)

# Bounds of the judge's schema. Generous for frontier judges, finite for small local ones.
MAX_ITEMS = 8
MAX_STANCES = 8
MAX_TEXT = 600
MAX_LABEL = 120

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Label = Annotated[str, StringConstraints(max_length=MAX_LABEL)]

FailureReason = Literal[
    "all_panels_failed",
    "insufficient_credits",
    "rate_limited",
    "invalid_model",
    "judge_not_valid_json",
    "judge_schema_mismatch",
    "judge_upstream_error",
    "judge_empty_completion",
    "cancelled",
    "fusion_invocation_capped",
    "unexpected_error",
    # Ours, beyond the hosted service's codes:
    "quorum_not_met",
    "budget_exceeded",
    "deadline_exceeded",
]
JUDGE_FAILURES: frozenset[str] = frozenset(
    {
        "judge_not_valid_json",
        "judge_schema_mismatch",
        "judge_upstream_error",
        "judge_empty_completion",
    }
)

# The judge's schema forbids extra keys (as strict structured output requires), while
# validation ignores them: a judge that adds a key still delivers the five that matter.
_STRICT_SCHEMA = ConfigDict(extra="ignore", json_schema_extra={"additionalProperties": False})


class Stance(BaseModel):
    """One model's position on a contested topic."""

    model_config = _STRICT_SCHEMA
    model: Label
    stance: Text


class Contradiction(BaseModel):
    """A topic on which panel models disagree."""

    model_config = _STRICT_SCHEMA
    topic: Text
    stances: list[Stance] = Field(max_length=MAX_STANCES)


class PartialCoverage(BaseModel):
    """A point that only some panel models covered."""

    model_config = _STRICT_SCHEMA
    models: list[Label] = Field(max_length=MAX_STANCES)
    point: Text


class UniqueInsight(BaseModel):
    """Something only one panel model raised."""

    model_config = _STRICT_SCHEMA
    model: Label
    insight: Text


class FusionAnalysis(BaseModel):
    """The judge's comparison of the panel's answers. All five keys are required."""

    model_config = _STRICT_SCHEMA
    consensus: list[Text] = Field(max_length=MAX_ITEMS)
    """Points all or most panel models agreed on (higher confidence)."""
    contradictions: list[Contradiction] = Field(max_length=MAX_ITEMS)
    """Where the panel disagreed, with each model's stance."""
    partial_coverage: list[PartialCoverage] = Field(max_length=MAX_ITEMS)
    """Points only some models covered."""
    unique_insights: list[UniqueInsight] = Field(max_length=MAX_ITEMS)
    """Points a single model raised."""
    blind_spots: list[Text] = Field(max_length=MAX_ITEMS)
    """Topics no panel model addressed."""


@dataclass(frozen=True)
class AnalysisLimits:
    """Tighter bounds for the schema sent to a judge: small local models write until the
    bounds stop them, so a lower `maxItems` / `maxLength` keeps their analysis short.

    Any analysis within these bounds also validates against `FusionAnalysis`.
    """

    max_items: int = MAX_ITEMS
    max_text: int = MAX_TEXT

    def json_schema(self) -> dict[str, Any]:
        """`FusionAnalysis`'s JSON schema with every bound lowered to these limits."""
        schema = copy.deepcopy(FusionAnalysis.model_json_schema())
        _lower_bounds(schema, self)
        return schema


def _lower_bounds(node: Any, limits: AnalysisLimits) -> None:
    if isinstance(node, dict):
        if "maxItems" in node:
            node["maxItems"] = min(node["maxItems"], limits.max_items)
        if "maxLength" in node:
            node["maxLength"] = min(node["maxLength"], limits.max_text)
        for value in node.values():
            _lower_bounds(value, limits)
    elif isinstance(node, list):
        for value in node:
            _lower_bounds(value, limits)


class PanelResponse(BaseModel):
    """A panelist that answered, with its full text."""

    model: str
    content: str


class FailedModel(BaseModel):
    """A panelist that failed; `status_code` is the upstream HTTP status when there was one."""

    model: str
    error: str
    status_code: int | None = None


class Source(BaseModel):
    """A web page retrieved during the run."""

    url: str
    title: str | None = None


class TokenUsage(BaseModel):
    """Tokens (and cost in USD, where the backend reports it) of one or more calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None

    def __add__(self, other: TokenUsage) -> TokenUsage:
        cost = (
            None
            if self.cost is None and other.cost is None
            else ((self.cost or 0.0) + (other.cost or 0.0))
        )
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cost=cost,
        )


class FusionUsage(BaseModel):
    """Token usage and cost per stage, per model and in total."""

    panel: TokenUsage = Field(default_factory=TokenUsage)
    judge: TokenUsage = Field(default_factory=TokenUsage)
    synthesis: TokenUsage = Field(default_factory=TokenUsage)
    by_model: dict[str, TokenUsage] = Field(default_factory=dict)
    """Summed over every call to each model, across stages."""

    def add_model(self, model: str, usage: TokenUsage) -> None:
        """Count a call's usage under its model in `by_model`."""
        self.by_model[model] = self.by_model.get(model, TokenUsage()) + usage

    @property
    def total(self) -> TokenUsage:
        """All stages together."""
        return self.panel + self.judge + self.synthesis

    @model_serializer(mode="wrap")
    def _with_total(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        data["total"] = self.total.model_dump()
        return data


class CascadeReport(BaseModel):
    """What the cascade did in one run (`result.cascade`)."""

    escalated: bool
    """Whether the remaining seats were asked."""
    first: list[str]
    """The seats that answered first."""
    rule: str
    reason: str
    """Why it stopped or escalated, in words."""
    stages: dict[Literal["first", "escalation"], FusionUsage] = Field(default_factory=dict)
    """Usage of each stage: the first seats (and the judge's first analysis), then, when it
    escalated, the remaining seats and the judge's analysis of every answer."""


class FusionResult(BaseModel):
    """What the fusion tool returns: the contract's JSON, plus token usage.

    `model_dump(mode="json")` gives the contract's shape: `analysis` is omitted when the
    judge failed and `failed_models` (and `degraded`) when no panelist failed;
    `failure_reason` is always present (null on success).
    """

    status: Literal["ok", "error"] = "ok"
    analysis: FusionAnalysis | None = None
    responses: list[PanelResponse] = Field(default_factory=list)
    failed_models: list[FailedModel] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    failure_reason: FailureReason | None = None
    failure_detail: str | None = None
    """The upstream error behind `failure_reason`, verbatim."""
    degraded: bool = False
    """True when the result was built without some panelists (see `failed_models`)."""
    usage: FusionUsage = Field(default_factory=FusionUsage)
    cascade: CascadeReport | None = None
    """Ours: what the cascade did, when the run had one (absent otherwise)."""

    @model_serializer(mode="wrap")
    def _contract_shape(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.analysis is None:
            data.pop("analysis", None)
        if not self.failed_models:
            data.pop("failed_models", None)
        if self.failure_detail is None:
            data.pop("failure_detail", None)
        if not self.degraded:
            data.pop("degraded", None)  # like `failed_models`, there when it applies
        if self.cascade is None:
            data.pop("cascade", None)
        return data
