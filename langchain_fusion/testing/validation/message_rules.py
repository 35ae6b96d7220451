"""Strict rules about ``messages``: their shape, their content, and tool call pairing."""

from __future__ import annotations

import json
from typing import Any

from langchain_fusion.testing.script import JsonDict
from langchain_fusion.testing.validation.refusal import (
    Refusal,
    assistant_tool_calls,
    call_ids,
    empty_array,
    messages,
    missing,
    not_supported,
    wrong_type,
)

__all__ = [
    "assistant_tool_calls_are_well_formed",
    "message_roles_are_known",
    "messages_have_content",
    "tool_call_arguments_are_json_objects",
    "tool_calls_are_answered",
    "tool_messages_answer_a_call",
    "tool_messages_name_their_call",
]

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
# An assistant message needs content unless it carries one of these instead.
_CONTENT_STAND_INS = ("tool_calls", "function_call", "refusal", "audio")


# -- shape -------------------------------------------------------------------------------


def message_roles_are_known(body: JsonDict) -> Refusal | None:
    """Every message has a role, and OpenAI knows it."""
    for i, message in messages(body):
        if "role" not in message:
            return missing(f"messages[{i}].role")
        if message["role"] not in ROLES:
            supported = ", ".join(f"'{role}'" for role in ROLES[:-1]) + f", and '{ROLES[-1]}'"
            return not_supported(f"messages[{i}].role", message["role"], supported)
    return None


def assistant_tool_calls_are_well_formed(body: JsonDict) -> Refusal | None:
    """Each assistant tool call has an id, a type, a function name and string arguments."""
    for i, message in messages(body):
        calls = message.get("tool_calls")
        if message.get("role") != "assistant" or calls is None:
            continue
        if not isinstance(calls, list):
            return wrong_type(f"messages[{i}].tool_calls", "an array of objects", calls)
        if not calls:
            return empty_array(f"messages[{i}].tool_calls")
        for j, call in enumerate(calls):
            refusal = _tool_call_shape(f"messages[{i}].tool_calls[{j}]", call)
            if refusal is not None:
                return refusal
    return None


def _tool_call_shape(where: str, call: Any) -> Refusal | None:
    if not isinstance(call, dict):
        return wrong_type(where, "an object", call)
    for key in ("id", "type", "function"):
        if key not in call:
            return missing(f"{where}.{key}")
    if not isinstance(call["id"], str):
        return wrong_type(f"{where}.id", "a string", call["id"])
    function = call["function"]
    if not isinstance(function, dict):
        return wrong_type(f"{where}.function", "an object", function)
    for key in ("name", "arguments"):
        if key not in function:
            return missing(f"{where}.function.{key}")
        if not isinstance(function[key], str):
            return wrong_type(f"{where}.function.{key}", "a string", function[key])
    return None


def tool_messages_name_their_call(body: JsonDict) -> Refusal | None:
    """Every tool message says which call it answers."""
    for i, message in messages(body):
        if message.get("role") != "tool":
            continue
        if "tool_call_id" not in message:
            return missing(f"messages[{i}].tool_call_id")
        if not isinstance(message["tool_call_id"], str):
            return wrong_type(f"messages[{i}].tool_call_id", "a string", message["tool_call_id"])
    return None


# -- content -----------------------------------------------------------------------------


def messages_have_content(body: JsonDict) -> Refusal | None:
    """Every message has content, but an assistant's tool calls (or refusal) stand in."""
    for i, message in messages(body):
        role, content = message.get("role"), message.get("content")
        if role == "developer":  # its own schema, with its own words
            if "content" not in message:
                return missing(f"messages[{i}].content")
            if content is None:
                expected = "one of a string or array of objects"
                return wrong_type(f"messages[{i}].content", expected, None)
            continue
        if content is not None:
            continue
        if role == "assistant" and any(message.get(key) is not None for key in _CONTENT_STAND_INS):
            continue
        message_text = "Invalid value for 'content': expected a string, got null."
        return Refusal(message_text, f"messages.[{i}].content", None)
    return None


def tool_call_arguments_are_json_objects(body: JsonDict) -> Refusal | None:
    """Every assistant tool call's ``arguments`` string holds a JSON object."""
    for i, message in messages(body):
        for j, call in enumerate(assistant_tool_calls(message)):
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if not isinstance(arguments, str):
                continue  # a shape rule's business
            try:
                parsed = json.loads(arguments)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                param = f"messages[{i}].tool_calls[{j}].function.arguments"
                message_text = f"Invalid '{param}': arguments must be a valid JSON object string."
                return Refusal(message_text, param, "invalid_value")
    return None


# -- tool call pairing -------------------------------------------------------------------


def tool_calls_are_answered(body: JsonDict) -> Refusal | None:
    """Each tool call gets its tool message before the conversation moves on."""
    listed = list(messages(body))
    for position, (i, message) in enumerate(listed):
        asked = call_ids(message)
        answered = set()
        for _, reply in listed[position + 1 :]:
            if reply.get("role") != "tool":
                break
            answered.add(reply.get("tool_call_id"))
        unanswered = [call_id for call_id in asked if call_id not in answered]
        if unanswered:
            message_text = (
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(unanswered)}"
            )
            return Refusal(message_text, f"messages.[{i}].role", None)
    return None


def tool_messages_answer_a_call(body: JsonDict) -> Refusal | None:
    """Each tool message answers a call just made, and no call is answered twice."""
    open_calls: set[str] = set()  # calls of the assistant message this run of tools follows
    for i, message in messages(body):
        if message.get("role") != "tool":
            open_calls = set(call_ids(message))
            continue
        call_id = message.get("tool_call_id")
        if call_id not in open_calls:
            message_text = (
                "Invalid parameter: messages with role 'tool' must be a response to a "
                "preceeding message with 'tool_calls'."
            )
            return Refusal(message_text, f"messages.[{i}].role", None)
        open_calls.discard(call_id)  # a second answer to the same call is refused too
    return None
