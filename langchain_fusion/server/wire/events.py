"""The Responses API's stream events, one model each, as the hosted schema has them: the
standard ones (OpenAI's) and the hosted `response.fusion_call.*` progress events, each with
`item_id` (the fusion item), `output_index` and `sequence_number`."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import ConfigDict
from sse_starlette import ServerSentEvent

from langchain_fusion.server.wire.base import WireModel
from langchain_fusion.server.wire.responses import OutputItem, OutputText, ResponseObject


class Event(WireModel):
    type: str
    sequence_number: int

    def sse(self) -> ServerSentEvent:
        """The event framed for `sse-starlette`: its `event:` name is its type."""
        return ServerSentEvent(data=json.dumps(self.wire()), event=self.type)


class ResponseEvent(Event):
    type: Literal[
        "response.created",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    ]
    response: ResponseObject


class OutputItemEvent(Event):
    type: Literal["response.output_item.added", "response.output_item.done"]
    output_index: int
    item: OutputItem


class ContentPartEvent(Event):
    type: Literal["response.content_part.added", "response.content_part.done"]
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class TextDeltaEvent(Event):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[dict[str, Any]]


class TextDoneEvent(Event):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[dict[str, Any]]


class ArgumentsDeltaEvent(Event):
    type: Literal["response.function_call_arguments.delta"] = (
        "response.function_call_arguments.delta"
    )
    item_id: str
    output_index: int
    delta: str


class ArgumentsDoneEvent(Event):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    item_id: str
    output_index: int
    name: str
    arguments: str


class ErrorEvent(Event):
    type: Literal["error"] = "error"
    code: str | None
    message: str
    param: str | None
    availability: dict[str, Any] | None = None
    """The hosted `availability` object, on an error about the models' availability."""


# --- the fusion call's progress -------------------------------------------------------------


class FusionEvent(Event):
    item_id: str
    output_index: int


class EventUsage(WireModel):
    """Ours (the hosted events allow extra properties): what one panelist, or the analyst,
    spent; `cost` in USD, when the backend reported it. A field it does not know is left
    out rather than losing the event."""

    model_config = ConfigDict(extra="ignore")

    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost: float | None = None


class ResearchToolCall(WireModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    query: str


class ResearchStep(WireModel):
    """Ours: the research step a panelist is about to run (see `PanelReasoningDelta`)."""

    model_config = ConfigDict(extra="ignore")

    step: int
    max_steps: int
    tool_calls: list[ResearchToolCall]


class FusionInProgress(FusionEvent):
    type: Literal["response.fusion_call.in_progress"] = "response.fusion_call.in_progress"


class PanelAdded(FusionEvent):
    type: Literal["response.fusion_call.panel.added"] = "response.fusion_call.panel.added"
    model: str


class PanelDelta(FusionEvent):
    type: Literal["response.fusion_call.panel.delta"] = "response.fusion_call.panel.delta"
    model: str
    delta: str


class PanelReasoningDelta(FusionEvent):
    """With `research` (ours), an empty delta: the panelist runs a research step."""

    type: Literal["response.fusion_call.panel.reasoning.delta"] = (
        "response.fusion_call.panel.reasoning.delta"
    )
    model: str
    delta: str
    research: ResearchStep | None = None


class PanelCompleted(FusionEvent):
    type: Literal["response.fusion_call.panel.completed"] = "response.fusion_call.panel.completed"
    model: str
    content: str
    usage: EventUsage | None = None


class PanelFailed(FusionEvent):
    type: Literal["response.fusion_call.panel.failed"] = "response.fusion_call.panel.failed"
    model: str
    error: str
    status_code: int | None = None
    usage: EventUsage | None = None


class AnalysisInProgress(FusionEvent):
    """`analyst_model`, and `judge_model` (its deprecated alias, the same value)."""

    type: Literal["response.fusion_call.analysis.in_progress"] = (
        "response.fusion_call.analysis.in_progress"
    )
    analyst_model: str
    judge_model: str


class AnalysisCompleted(FusionEvent):
    type: Literal["response.fusion_call.analysis.completed"] = (
        "response.fusion_call.analysis.completed"
    )
    analysis: dict[str, Any]
    usage: EventUsage | None = None


class FusionCompleted(FusionEvent):
    type: Literal["response.fusion_call.completed"] = "response.fusion_call.completed"


FUSION_EVENTS: dict[str, type[FusionEvent]] = {
    model.model_fields["type"].default.removeprefix("response."): model
    for model in (
        FusionInProgress,
        PanelAdded,
        PanelDelta,
        PanelReasoningDelta,
        PanelCompleted,
        PanelFailed,
        AnalysisInProgress,
        AnalysisCompleted,
        FusionCompleted,
    )
}
"""The contract's progress event name (`fusion_call.panel.added`) → its wire model."""
