"""When the outer model's server-tool loop stops: the hosted `stop_server_tools_when`.

Each condition is a dict in the hosted shape; any one that holds stops the loop (OR).
`step_count_is` counts server-tool steps (an outer call, or a forced deliberation);
`max_cost` and `max_tokens_used` hold once the loop's running total (the outer calls and
the deliberation) exceeds them; `has_tool_call` once the outer model called that tool
(`fusion` or `openrouter:fusion` for the server tool); `finish_reason_is` once a step
finished with that reason. As hosted, a condition that holds while the model is calling
tools lets those calls run, then the loop makes one last call with tool calls disabled,
so that the answer is text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_fusion.graph.prompts import FUSION_TOOL_NAME

CONDITIONS = {
    "step_count_is": "step_count",
    "max_cost": "max_cost_in_dollars",
    "max_tokens_used": "max_tokens",
    "has_tool_call": "tool_name",
    "finish_reason_is": "reason",
}
"""Each condition's `type` and the field it is read from."""
SERVER_TOOL_NAMES = {FUSION_TOOL_NAME, "openrouter:fusion"}


@dataclass
class LoopProgress:
    """What the outer loop has done so far."""

    steps: int = 0
    tokens: int = 0
    cost: float = 0.0
    finish_reason: str | None = None
    """The last step's."""
    tool_names: set[str] = field(default_factory=set)

    def record(self, cost: Any, tools: list[str], finish_reason: Any) -> None:
        """Count one server-tool step: its cost (USD, when reported), the tools it called
        and how it finished."""
        self.steps += 1
        self.cost += float(cost) if isinstance(cost, int | float) else 0.0
        self.tool_names.update(tools)
        self.finish_reason = finish_reason if isinstance(finish_reason, str) else None


def check_conditions(conditions: Any) -> list[Mapping[str, Any]]:
    """The conditions, checked for their shape (a `ValueError` saying what is wrong)."""
    if not isinstance(conditions, Sequence) or isinstance(conditions, str) or not conditions:
        raise ValueError("stop_server_tools_when: a non-empty list of conditions is required")
    for index, condition in enumerate(conditions):
        kind = condition.get("type") if isinstance(condition, Mapping) else None
        if kind not in CONDITIONS:
            known = ", ".join(CONDITIONS)
            raise ValueError(f"stop_server_tools_when[{index}]: type must be one of {known}")
        if CONDITIONS[kind] not in condition:
            raise ValueError(f"stop_server_tools_when[{index}]: {CONDITIONS[kind]} is required")
    return list(conditions)


def holds(conditions: Sequence[Mapping[str, Any]], progress: LoopProgress) -> bool:
    """Whether any condition holds."""
    return any(_holds(condition, progress) for condition in conditions)


def _holds(condition: Mapping[str, Any], progress: LoopProgress) -> bool:
    kind = condition["type"]
    value = condition[CONDITIONS[kind]]
    if kind == "step_count_is":
        return progress.steps >= int(value)
    if kind == "max_cost":
        return progress.cost > float(value)
    if kind == "max_tokens_used":
        return progress.tokens > int(value)
    if kind == "has_tool_call":
        names = progress.tool_names
        return value in names or (value in SERVER_TOOL_NAMES and bool(SERVER_TOOL_NAMES & names))
    return bool(progress.finish_reason == value)
