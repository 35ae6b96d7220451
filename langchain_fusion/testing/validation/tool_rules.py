"""Strict rules about ``tools`` and ``tool_choice``."""

from __future__ import annotations

import re

from langchain_fusion.testing.script import JsonDict
from langchain_fusion.testing.validation.refusal import (
    Refusal,
    empty_array,
    function_tools,
    missing,
    not_supported,
    wrong_type,
)

__all__ = [
    "function_names_are_valid",
    "tool_choice_is_well_formed",
    "tool_choice_names_a_declared_function",
    "tool_choice_needs_tools",
    "tool_names_are_unique",
    "tools_are_well_formed",
]

_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
_MAX_FUNCTION_NAME = 64
_TOOL_CHOICES = ("none", "auto", "required")


def tools_are_well_formed(body: JsonDict) -> Refusal | None:
    """``tools`` is a non-empty list of named functions (or custom or OpenRouter tools)."""
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        return wrong_type("tools", "an array of objects", tools)
    if not tools:
        return empty_array("tools")
    for k, tool in enumerate(tools):
        if not isinstance(tool, dict):
            return wrong_type(f"tools[{k}]", "an object", tool)
        if "type" not in tool:
            return missing(f"tools[{k}].type")
        kind = tool["type"]
        if kind == "custom" or (isinstance(kind, str) and kind.startswith("openrouter:")):
            continue  # OpenAI's custom tools; OpenRouter's server tools run on its side
        if kind != "function":
            return not_supported(f"tools[{k}].type", kind, "'function' and 'custom'")
        if "function" not in tool:
            return missing(f"tools[{k}].function")
        function = tool["function"]
        if not isinstance(function, dict):
            return wrong_type(f"tools[{k}].function", "an object", function)
        if "name" not in function:
            return missing(f"tools[{k}].function.name")
        if not isinstance(function["name"], str):
            return wrong_type(f"tools[{k}].function.name", "a string", function["name"])
    return None


def function_names_are_valid(body: JsonDict) -> Refusal | None:
    """Function names are 1 to 64 letters, digits, ``_`` or ``-``."""
    for k, function in function_tools(body):
        name, param = function["name"], f"tools[{k}].function.name"
        if not name:
            message = (
                f"Invalid '{param}': empty string. "
                "Expected a string with minimum length 1, but got an empty string instead."
            )
            return Refusal(message, param, "empty_string")
        if len(name) > _MAX_FUNCTION_NAME:
            message = (
                f"Invalid '{param}': string too long. Expected a string with maximum length "
                f"{_MAX_FUNCTION_NAME}, but got a string with length {len(name)} instead."
            )
            return Refusal(message, param, "string_above_max_length")
        if not _FUNCTION_NAME.match(name):
            message = (
                f"Invalid '{param}': string does not match pattern. "
                f"Expected a string that matches the pattern '{_FUNCTION_NAME.pattern}'."
            )
            return Refusal(message, param, "invalid_value")
    return None


def tool_choice_is_well_formed(body: JsonDict) -> Refusal | None:
    """``tool_choice`` is "none", "auto", "required", or an object naming a function."""
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice in _TOOL_CHOICES:
            return None
        return not_supported("tool_choice", choice, "'none', 'auto', and 'required'")
    if not isinstance(choice, dict):
        expected = "one of one of 'none', 'auto', or 'required' or object"  # sic, OpenAI's
        return wrong_type("tool_choice", expected, choice)
    if choice.get("type") in ("allowed_tools", "custom"):
        return None  # OpenAI's other forms, which name no function
    if "function" not in choice:
        return missing("tool_choice.function")
    function = choice["function"]
    if not isinstance(function, dict):
        return wrong_type("tool_choice.function", "an object", function)
    if "name" not in function:
        return missing("tool_choice.function.name")
    return None


def tool_choice_needs_tools(body: JsonDict) -> Refusal | None:
    """A ``tool_choice`` (any, "none" included) only comes with ``tools``."""
    if body.get("tool_choice") is None or body.get("tools") is not None:
        return None
    message = (
        "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."
    )
    return Refusal(message, "tool_choice", None)


def tool_choice_names_a_declared_function(body: JsonDict) -> Refusal | None:
    """A named ``tool_choice`` names one of the request's function tools."""
    choice = body.get("tool_choice")
    function = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(function, dict) or body.get("tools") is None:
        return None
    name = function.get("name")
    if any(declared["name"] == name for _, declared in function_tools(body)):
        return None
    message = (
        f"Invalid value for 'function_call': no function named '{name}' "
        "was specified in the 'functions' parameter."
    )
    return Refusal(message, "function_call", None)


def tool_names_are_unique(body: JsonDict) -> Refusal | None:
    """No two function tools share a name."""
    names = [function["name"] for _, function in function_tools(body)]
    if len(names) == len(set(names)):
        return None
    return Refusal("tools: Tool names must be unique.", "tools", None)
