"""One admission path for both routes: a body is parsed and checked here before anything
else reads it, so a client's mistake is a 400 (or 413) in the hosted shape before any
upstream call, and a typo never becomes a paid, silently different request.

- Parsing refuses what `json.loads` lets through but nothing downstream handles:
  `NaN`/`Infinity`, lone surrogates (`"\\ud800"`), nesting deeper than `MAX_DEPTH`.
- The top-level keys must be the hosted request schema's (`known_fields.py`, checked
  against the pinned OpenAPI document by a test); an unknown one is refused with the
  closest valid key ("did you mean").
- Scalars have their type (`max_tokens: "100"` or `true` is no integer).
- A misspelt tool type, plugin id or fusion alias is refused with the closest valid one.
- Messages (and Responses input messages): a count and size limit, content part types
  of the schema and only their keys ("did you mean"), every assistant tool call
  answered before the next turn.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from langchain_fusion.chat_models import FUSION_ALIASES
from langchain_fusion.server.errors import GatewayError, invalid
from langchain_fusion.server.known_fields import (
    CHAT_PART_KEYS,
    CHAT_REQUEST_KEYS,
    CHAT_TOOL_TYPES,
    PLUGIN_IDS,
    RESPONSES_INPUT_PART_KEYS,
    RESPONSES_OUTPUT_PART_KEYS,
    RESPONSES_REQUEST_KEYS,
    RESPONSES_TOOL_TYPES,
)

MAX_DEPTH = 64
"""Nesting a body may have (a tool's JSON schema included)."""
MAX_MESSAGES = 2_000
"""Messages (or Responses input items) one request may carry."""
MAX_TEXT_BYTES = 4 * 1024 * 1024
"""UTF-8 bytes of message text one request may carry."""

_INTEGERS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "max_tool_calls")
_NUMBERS = (
    "temperature",
    "top_p",
    "top_k",
    "top_a",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
)
_BOOLEANS = ("stream", "parallel_tool_calls", "logprobs", "store", "background")


def _closest(value: str, options: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(value, sorted(options), n=1, cutoff=0.75)
    return found[0] if found else None


def _unknown(what: str, value: str, options: Iterable[str], param: str) -> GatewayError:
    guess = _closest(value, options)
    hint = f"; did you mean {guess!r}?" if guess else ""
    return invalid(f"{what} {value!r} is not known{hint}", param)


# --- parsing -----------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise invalid(f"the request body is nested deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise invalid(f"the request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    _check_tree(body)
    return body


def _check_tree(body: Any) -> None:
    """Depth, finite numbers and valid Unicode everywhere, without recursion."""
    stack: list[tuple[Any, int, str]] = [(body, 1, "")]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise invalid(f"the request body is nested deeper than {MAX_DEPTH} levels", where)
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, where)
                stack.append((item, depth + 1, f"{where}.{key}" if where else key))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, where)
        elif isinstance(value, float) and not math.isfinite(value):
            raise invalid(f"{where or 'body'}: numbers must be finite", where or None)


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(
            f"{where or 'body'}: invalid Unicode (a lone surrogate escape such as \\ud800)",
            where or None,
        ) from None


# --- the request -------------------------------------------------------------------------


def admit(body: Mapping[str, Any], route: str) -> None:
    """Check `body` for `route` ("chat" or "responses"); raise the client's 400."""
    responses = route == "responses"
    known = RESPONSES_REQUEST_KEYS if responses else CHAT_REQUEST_KEYS
    for key in body:
        if key not in known:
            raise _unknown("the field", key, known, key)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("'model' is required", "model")
    misspelt = model.startswith("openrouter/") and _closest(model, FUSION_ALIASES) is not None
    if misspelt and model not in FUSION_ALIASES:
        raise _unknown("the model", model, FUSION_ALIASES, "model")
    _scalars(body)
    _tools(body.get("tools"), RESPONSES_TOOL_TYPES if responses else CHAT_TOOL_TYPES)
    _plugins(body.get("plugins"))
    if responses:
        _items(body.get("input"))
    else:
        _messages(body.get("messages"))


def _scalars(body: Mapping[str, Any]) -> None:
    for name in (*_INTEGERS, "n"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise invalid(f"'{name}' must be an integer, not {json.dumps(value)}", name)
        least = 0 if name == "max_tool_calls" else 1  # 0: no tool call at all
        if isinstance(value, int) and not isinstance(value, bool) and value < least:
            raise invalid(f"'{name}' must be at least {least}", name)
    for name in _NUMBERS:
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise invalid(f"'{name}' must be a number, not {json.dumps(value)}", name)
    for name in _BOOLEANS:
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            raise invalid(f"'{name}' must be true or false, not {json.dumps(value)}", name)


def _tools(tools: Any, types: frozenset[str]) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise invalid("'tools' must be a list", "tools")
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise invalid(f"tools[{index}] must be an object", f"tools[{index}]")
        kind = tool.get("type")
        if not isinstance(kind, str):
            raise invalid(f"tools[{index}] needs a 'type'", f"tools[{index}].type")
        if kind not in types:
            raise _unknown("the tool type", kind, types, f"tools[{index}].type")


def _plugins(plugins: Any) -> None:
    if plugins is None:
        return
    if not isinstance(plugins, list):
        raise invalid("'plugins' must be a list", "plugins")
    for index, plugin in enumerate(plugins):
        ident = plugin.get("id") if isinstance(plugin, dict) else None
        if not isinstance(ident, str):
            raise invalid(f"plugins[{index}] needs an 'id'", f"plugins[{index}].id")
        if ident not in PLUGIN_IDS:
            raise _unknown("the plugin id", ident, PLUGIN_IDS, f"plugins[{index}].id")


def _size(items: list[Any], what: str) -> None:
    if len(items) > MAX_MESSAGES:
        raise GatewayError(
            413, f"'{what}' holds {len(items)} items; this server takes at most {MAX_MESSAGES}"
        )
    size = len(json.dumps(items, ensure_ascii=False).encode())
    if size > MAX_TEXT_BYTES:
        raise GatewayError(
            413, f"'{what}' is {size} bytes; this server takes at most {MAX_TEXT_BYTES}"
        )


def _messages(messages: Any) -> None:
    if messages is None:
        raise invalid("messages: Field required", "messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty list", "messages")
    _size(messages, "messages")
    pending: dict[str, int] = {}  # tool calls not answered yet → the message that made them
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid(f"{where} must be an object", where)
        role = message.get("role")
        if role != "tool" and pending:
            raise _unanswered(pending)
        _parts(message.get("content"), CHAT_PART_KEYS, f"{where}.content")
        if role == "assistant":
            for call in message.get("tool_calls") or []:
                if isinstance(call, dict) and isinstance(call.get("id"), str):
                    pending[call["id"]] = index
        elif role == "tool":
            pending.pop(str(message.get("tool_call_id")), None)
    if pending:
        raise _unanswered(pending)


def _unanswered(pending: Mapping[str, int]) -> GatewayError:
    call, index = next(iter(pending.items()))
    return invalid(
        f"messages[{index}]: the tool call {call!r} has no tool message answering it; "
        "send its result (role 'tool', tool_call_id) before the next message",
        f"messages[{index}].tool_calls",
    )


def _parts(content: Any, known: Mapping[str, frozenset[str]], where: str) -> None:
    """Each content part of a message: a type the schema has, and only that type's keys."""
    if not isinstance(content, list):
        return
    for position, part in enumerate(content):
        at = f"{where}[{position}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str) or kind not in known:
            raise _unknown("the content part type", str(kind), known, f"{at}.type")
        for key in part:
            if key not in known[kind]:
                raise _unknown(f"the key of a {kind!r} part", key, known[kind], f"{at}.{key}")


_ASSISTANT_PART_KEYS = {**RESPONSES_INPUT_PART_KEYS, **RESPONSES_OUTPUT_PART_KEYS}


def _items(items: Any) -> None:
    if not isinstance(items, list):
        return
    _size(items, "input")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue  # the request model says what an item must be
        if item.get("type", "message" if "role" in item else None) != "message":
            continue
        assistant = item.get("role") == "assistant"
        known = _ASSISTANT_PART_KEYS if assistant else RESPONSES_INPUT_PART_KEYS
        _parts(item.get("content"), known, f"input[{index}].content")
