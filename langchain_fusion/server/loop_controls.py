"""The outer loop's controls, as the hosted request has them since August:
`max_tool_calls` (server-tool steps of the outer model, at most 30, the default) and
`stop_server_tools_when` (conditions that end the server-tool loop; any one that holds
ends it, and they override `max_tool_calls`).

Here the outer loop's server tool is fusion, which runs at most once a turn, so
`max_tool_calls: 0` (fusion not offered) is the only value of it that changes a run. The
conditions are checked here for their shape and then run by `ChatFusion`'s loop
(`chat_models/loop_stop.py`): once one holds, the fusion call pending runs and the outer
model makes one last call with tool calls disabled (`step_count_is: 0`: no fusion at all).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

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


def as_conditions(conditions: list[StopCondition]) -> list[dict[str, Any]]:
    """The conditions in the hosted shape, as `ChatFusion` takes them."""
    return [condition.model_dump() for condition in conditions]


def offers_server_tools(max_tool_calls: int | None, stop_when: list[StopCondition] | None) -> bool:
    """Whether the outer model may take a server-tool step at all (`max_tool_calls: 0`
    says no, unless stop conditions are given: they override it, as hosted)."""
    return bool(stop_when) or max_tool_calls != 0
