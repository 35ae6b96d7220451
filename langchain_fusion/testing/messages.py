"""Reading a chat request's ``messages``: the text of a message, the last question."""

from __future__ import annotations

from typing import Any

from langchain_fusion.testing.script import JsonDict

__all__ = ["content_text", "last_user_index", "last_user_text", "tool_results_after_user"]


def content_text(content: Any) -> str:
    """Text of a message ``content``: a string, or a list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        ]
        return " ".join(parts)
    return ""


def last_user_index(messages: list[JsonDict]) -> int:
    """Index of the last ``user`` message, -1 when there is none."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    return -1


def last_user_text(body: JsonDict) -> str:
    """Text of the request's last ``user`` message ("" when there is none)."""
    messages: list[JsonDict] = body.get("messages") or []
    index = last_user_index(messages)
    return content_text(messages[index].get("content")) if index >= 0 else ""


def tool_results_after_user(messages: list[JsonDict]) -> list[JsonDict]:
    """The ``tool`` messages since the last ``user`` message: this turn's tool results."""
    start = last_user_index(messages) + 1
    return [message for message in messages[start:] if message.get("role") == "tool"]
