"""What an agent's conversation says about the current turn: its prompt, whether it has
deliberated. A turn is everything after the last user message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.tool import ToolCall

from langchain_fusion.contract.result import FusionResult
from langchain_fusion.graph.prompts import format_tool_content

CAPPED = "fusion_invocation_capped"


def current_turn(messages: Sequence[BaseMessage]) -> Sequence[BaseMessage]:
    """The messages after the last user message (all of them when there is none)."""
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], HumanMessage):
            return messages[index + 1 :]
    return messages


def deliberated(messages: Sequence[BaseMessage], tool_name: str) -> bool:
    """Whether this turn already holds a fusion call that ran (a refused or capped call did
    not: it cost nothing)."""
    return any(
        isinstance(message, ToolMessage)
        and message.name == tool_name
        and message.status != "error"
        and _failure_reason(message.artifact) != CAPPED
        for message in current_turn(messages)
    )


def turn_prompt(messages: Sequence[BaseMessage]) -> str:
    """What a deliberation before the model's answer is asked: the user's last message."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text.strip()
    return ""


def capped_message(call: ToolCall | dict[str, Any], tool_name: str) -> ToolMessage:
    """The hosted service's answer to a second fusion call in a turn."""
    capped = FusionResult(
        status="error",
        failure_reason=CAPPED,
        failure_detail="one fusion per turn: this turn has already deliberated",
    )
    return ToolMessage(
        format_tool_content(capped),
        tool_call_id=call.get("id") or "",
        name=tool_name,
        artifact=capped,
    )


def forced_call(prompt: str, call_id: str, tool_name: str) -> AIMessage:
    """The call the model did not need to make, shown to it so that the transcript says
    where the deliberation's result came from."""
    return AIMessage(
        "",
        tool_calls=[{"name": tool_name, "args": {"prompt": prompt}, "id": call_id}],
    )


def _failure_reason(artifact: Any) -> Any:
    # A checkpointer may hand the artifact back as a plain dict.
    if isinstance(artifact, FusionResult):
        return artifact.failure_reason
    return artifact.get("failure_reason") if isinstance(artifact, dict) else None
