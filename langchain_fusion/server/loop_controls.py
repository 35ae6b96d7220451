"""The outer loop's controls, as the hosted request has them since August:
`max_tool_calls` (server-tool steps of the outer model, at most 30, the default) and
`stop_server_tools_when` (conditions that end the server-tool loop; any one that fires
ends it, and then overrides `max_tool_calls`).

Here the outer loop has one server tool, fusion, which runs at most once a turn; and, as
hosted, a condition that fires while the model is calling tools lets the pending calls run
and then makes one final turn without tools. So the only setting that changes a run is
`max_tool_calls: 0` (no server-tool step at all: fusion is not offered); the conditions are
checked for their shape and otherwise hold by construction.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_OUTER_TOOL_CALLS = 30
"""The hosted default, which is also its maximum."""


class _Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepCountIs(_Condition):
    type: Literal["step_count_is"]
    step_count: int = Field(ge=0)


class HasToolCall(_Condition):
    type: Literal["has_tool_call"]
    tool_name: str = Field(min_length=1)


class MaxTokensUsed(_Condition):
    type: Literal["max_tokens_used"]
    max_tokens: int = Field(ge=0)


class MaxCost(_Condition):
    type: Literal["max_cost"]
    max_cost_in_dollars: float = Field(ge=0)


class FinishReasonIs(_Condition):
    type: Literal["finish_reason_is"]
    reason: str = Field(min_length=1)


StopCondition = Annotated[
    StepCountIs | HasToolCall | MaxTokensUsed | MaxCost | FinishReasonIs,
    Field(discriminator="type"),
]
MaxToolCalls = Annotated[int, Field(ge=0, le=MAX_OUTER_TOOL_CALLS)]
StopServerToolsWhen = Annotated[list[StopCondition], Field(min_length=1)]


def offers_server_tools(max_tool_calls: int | None, stop_when: list[StopCondition] | None) -> bool:
    """Whether the outer model may take a server-tool step at all (`max_tool_calls: 0`
    says no, unless stop conditions are given: they override it, as hosted)."""
    return bool(stop_when) or max_tool_calls != 0
