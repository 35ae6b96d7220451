"""A refusal as OpenAI words it, the sentences its schema errors are made of, and the
readers the rules share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from langchain_fusion.testing.script import JsonDict

__all__ = [
    "Refusal",
    "assistant_tool_calls",
    "call_ids",
    "empty_array",
    "function_tools",
    "messages",
    "missing",
    "not_supported",
    "wrong_type",
]


@dataclass(frozen=True)
class Refusal:
    """A 400 as OpenAI words it: the ``message``, ``param`` and ``code`` of its error."""

    message: str
    param: str | None
    code: str | None


# -- OpenAI's schema errors: one sentence per kind of fault ------------------------------


def missing(param: str) -> Refusal:
    """The refusal for an absent field: "Missing required parameter: 'PARAM'."."""
    return Refusal(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def wrong_type(param: str, expected: str, value: Any) -> Refusal:
    """The refusal for a field of the wrong JSON type ("Invalid type for 'PARAM': ...")."""
    message = f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead."
    return Refusal(message, param, "invalid_type")


def not_supported(param: str, value: Any, supported: str) -> Refusal:
    """The refusal for a value outside an enum ("Invalid value: 'VALUE'. Supported ...")."""
    message = f"Invalid value: '{value}'. Supported values are: {supported}."
    return Refusal(message, param, "invalid_value")


def empty_array(param: str) -> Refusal:
    """The refusal for a list that must not be empty ("Invalid 'PARAM': empty array. ...")."""
    message = (
        f"Invalid '{param}': empty array. "
        "Expected an array with minimum length 1, but got an empty array instead."
    )
    return Refusal(message, param, "empty_array")


def _kind(value: Any) -> str:
    """How OpenAI names the JSON type it got."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# -- reading the request, tolerating what the shape rules refuse -------------------------


def messages(body: JsonDict) -> Iterator[tuple[int, JsonDict]]:
    """``(index, message)`` for each message that is an object."""
    items = body.get("messages")
    for index, message in enumerate(items if isinstance(items, list) else []):
        if isinstance(message, dict):
            yield index, message


def assistant_tool_calls(message: JsonDict) -> list[Any]:
    """An assistant message's ``tool_calls`` (empty when absent or not a list)."""
    calls = message.get("tool_calls") if message.get("role") == "assistant" else None
    return calls if isinstance(calls, list) else []


def call_ids(message: JsonDict) -> list[str]:
    """The ids of an assistant message's tool calls, in order."""
    calls = assistant_tool_calls(message)
    return [
        call["id"] for call in calls if isinstance(call, dict) and isinstance(call.get("id"), str)
    ]


def function_tools(body: JsonDict) -> Iterator[tuple[int, JsonDict]]:
    """``(index in tools, function)`` of each function tool that has a string name."""
    tools = body.get("tools")
    for index, tool in enumerate(tools if isinstance(tools, list) else []):
        if isinstance(tool, dict) and tool.get("type") == "function":
            function = tool.get("function")
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                yield index, function
