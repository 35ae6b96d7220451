"""The tool calls a scripted model makes: when, which tool, and with what arguments.

``ModelScript.tool_calls`` lists fixed calls, or says ``"auto"``: then the model picks
the tool the user's message mentions and fills its arguments from the message, the
way a real tool-calling model would (see `ModelScript` for the exact rules).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_fusion.testing.messages import last_user_text, tool_results_after_user
from langchain_fusion.testing.schema_examples import schema_example
from langchain_fusion.testing.script import JsonDict, ModelScript

__all__ = ["auto_tool_call", "function_tools", "numbered_tool_calls", "wants_tool_calls"]

# Quoted phrases: the quote must not sit inside a word, so "what's" opens nothing.
_QUOTED_RE = re.compile(r"""(?<!\w)(?:'([^'\n]+)'|"([^"\n]+)"|“([^”\n]+)”|‘([^’\n]+)’)(?!\w)""")
# Standalone numbers: not part of a word, a version ("v1.2") or a name ("x-9").
_NUMBER_RE = re.compile(r"(?<![\w.+-])[-+]?\d+(?:\.\d+)?(?!\w|\.\w)")
_CAMEL_RE = re.compile(r"([a-z0-9])([A-Z])")


def wants_tool_calls(body: JsonDict, script: ModelScript) -> bool:
    """Whether this answer is tool calls rather than text."""
    choice = body.get("tool_choice")
    tools = function_tools(body) if script.tool_calls == "auto" else body.get("tools")
    if not script.tool_calls or not tools or choice == "none":
        return False
    if script.tool_calls == "auto" and (choice == "required" or isinstance(choice, dict)):
        return True  # a real model must call a tool here, whatever happened before
    if script.tool_policy == "always":
        return True
    return not tool_results_after_user(body.get("messages") or [])


def function_tools(body: JsonDict) -> list[JsonDict]:
    """The request's function tools (``{"name", "description", "parameters"}`` each)."""
    tools = body.get("tools")
    functions = []
    for item in tools if isinstance(tools, list) else []:
        function = item.get("function") if isinstance(item, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            functions.append(function)
    return functions


def auto_tool_call(model: str, body: JsonDict) -> JsonDict:
    """The one call a tool-calling model would make here (see `ModelScript`)."""
    tool = _chosen_tool(body)
    schema = tool.get("parameters")
    if not isinstance(schema, dict):
        schema = {"type": "object", "properties": {}}
    arguments = schema_example(model, schema, tool["name"])
    if not isinstance(arguments, dict):
        arguments = {}
    _fill_from_message(arguments, schema, last_user_text(body))
    return {"name": tool["name"], "arguments": arguments}


def numbered_tool_calls(body: JsonDict, scripted: Sequence[Mapping[str, Any]]) -> list[JsonDict]:
    """``scripted`` calls in the wire format, with ids ``call_N``."""
    # Number after the calls already in the conversation, so ids stay unique per thread.
    earlier = sum(
        len(message.get("tool_calls") or [])
        for message in body.get("messages") or []
        if message.get("role") == "assistant"
    )
    calls = []
    for offset, call in enumerate(scripted, start=1):
        arguments = call.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        calls.append(
            {
                "id": f"call_{earlier + offset}",
                "type": "function",
                "function": {"name": str(call["name"]), "arguments": arguments},
            }
        )
    return calls


# -- which tool --------------------------------------------------------------------------


def _chosen_tool(body: JsonDict) -> JsonDict:
    tools = function_tools(body)
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        named = function.get("name") if isinstance(function, dict) else choice.get("name")
        for tool in tools:
            if tool["name"] == named:
                return tool
    text = last_user_text(body)
    scores = [_mentions(tool["name"], text) for tool in tools]
    best = max(scores)
    return tools[scores.index(best)] if best > (False, 0) else tools[0]


def _mentions(name: str, text: str) -> tuple[bool, int]:
    """How much ``text`` mentions a tool: its whole name as a word, then words of it."""
    lowered = text.lower()
    whole = re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", lowered) is not None
    words = set(re.findall(r"[^\W_]+", lowered))
    return whole, len(_name_words(name) & words)


def _name_words(name: str) -> set[str]:
    spaced = _CAMEL_RE.sub(r"\1 \2", name)
    return {word.lower() for word in re.split(r"[\W_]+", spaced) if len(word) >= 3}


# -- arguments from the message ----------------------------------------------------------


def _fill_from_message(arguments: JsonDict, schema: JsonDict, text: str) -> None:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return
    numbers = [float(found) for found in _NUMBER_RE.findall(text)]
    phrases = [next(g for g in match.groups() if g) for match in _QUOTED_RE.finditer(text)]
    whole_message = not phrases and bool(text.strip())
    for name, sub in properties.items():
        kind = _simple_kind(sub)
        if kind in ("integer", "number") and numbers:
            number = numbers.pop(0)
            integral = number.is_integer()
            arguments[name] = round(number) if kind == "integer" or integral else number
        elif kind == "string" and isinstance(sub, dict):
            value = phrases.pop(0) if phrases else text.strip() if whole_message else None
            whole_message = False
            if value is not None and _fits_length(value, sub):
                arguments[name] = value


def _simple_kind(schema: Any) -> str | None:
    """``integer``, ``number`` or ``string`` for a plain (or nullable) parameter."""
    if not isinstance(schema, dict) or "enum" in schema or "const" in schema:
        return None
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _simple_kind(non_null[0]) if len(non_null) == 1 else None
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "string" and ("format" in schema or "pattern" in schema):
        return None
    return kind if kind in ("integer", "number", "string") else None


def _fits_length(value: str, schema: JsonDict) -> bool:
    low, high = schema.get("minLength"), schema.get("maxLength")
    return (low is None or len(value) >= int(low)) and (high is None or len(value) <= int(high))
