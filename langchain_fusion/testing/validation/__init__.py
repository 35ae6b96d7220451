"""Strict mode: refuse the chat requests that real providers refuse, in their words.

A forgiving fake lets a test pass on a conversation that OpenAI, Anthropic or OpenRouter
would answer with HTTP 400. `ScriptedOpenAIServer(strict=True)` (the default) runs every
chat completion request through `find_refusal` before any scripted behaviour (latency,
faults), and answers the first rule broken with 400 and OpenAI's error body::

    {"error": {"message": ..., "type": "invalid_request_error", "param": ..., "code": ...}}

Rules, in the order they are checked (``i``, ``j``, ``k`` are indexes; each rule is the
function of the same name below):

Message shape
  message_roles_are_known: a message has a ``role``, one OpenAI knows.
    missing: "Missing required parameter: 'messages[i].role'."
      (param ``messages[i].role``, code ``missing_required_parameter``)
    unknown: "Invalid value: 'ROLE'. Supported values are: 'system', 'assistant',
      'user', 'function', 'tool', and 'developer'." (code ``invalid_value``)
  assistant_tool_calls_are_well_formed: each item of an assistant's ``tool_calls`` has
    an ``id``, a ``type`` and a ``function`` with a ``name`` and string ``arguments``.
    missing: "Missing required parameter: 'messages[i].tool_calls[j].function.arguments'."
    wrong type: "Invalid type for 'messages[i].tool_calls[j].function.arguments':
      expected a string, but got an object instead." (code ``invalid_type``)
    empty list: "Invalid 'messages[i].tool_calls': empty array. Expected an array with
      minimum length 1, but got an empty array instead." (code ``empty_array``)
  tool_messages_name_their_call: a ``tool`` message has a ``tool_call_id``.
    "Missing required parameter: 'messages[i].tool_call_id'."

Tools and tool_choice
  tools_are_well_formed: ``tools`` is a non-empty list of ``{"type": "function",
    "function": {"name": ...}}``; ``"custom"`` tools (OpenAI's own) and OpenRouter's
    server tools (a type starting with ``openrouter:``, e.g. ``openrouter:web_search``)
    pass as they are.
    empty: "Invalid 'tools': empty array. Expected an array with minimum length 1, but
      got an empty array instead." (param ``tools``, code ``empty_array``)
    other type: "Invalid value: 'TYPE'. Supported values are: 'function' and 'custom'."
      (param ``tools[k].type``, code ``invalid_value``)
    no function or name: "Missing required parameter: 'tools[k].function.name'."
  function_names_are_valid: a function name matches ``^[a-zA-Z0-9_-]{1,64}$``.
    "Invalid 'tools[k].function.name': string does not match pattern. Expected a string
      that matches the pattern '^[a-zA-Z0-9_-]+$'." (code ``invalid_value``); too long:
      "... string too long. Expected a string with maximum length 64, but got a string
      with length N instead." (``string_above_max_length``); "": "... empty string.
      Expected a string with minimum length 1, but got an empty string instead."
  tool_choice_is_well_formed: ``"none"``, ``"auto"``, ``"required"``, or an object
    naming a function.
    "Invalid value: 'VALUE'. Supported values are: 'none', 'auto', and 'required'."
    "Missing required parameter: 'tool_choice.function.name'."
  tool_choice_needs_tools: no ``tool_choice`` (not even ``"none"``) without ``tools``.
    "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are
      specified." (param ``tool_choice``, code null)
  tool_choice_names_a_declared_function: a named ``tool_choice`` is one of the tools.
    "Invalid value for 'function_call': no function named 'NAME' was specified in the
      'functions' parameter." (param ``function_call``, code null: OpenAI words it in
      terms of the legacy ``functions`` API it maps ``tools`` onto)
  tool_names_are_unique: no two function tools share a name (Anthropic's rule; OpenRouter
    relays its error). "tools: Tool names must be unique." (param ``tools``)

Content
  messages_have_content: ``content`` is present and not null, except on an assistant
    message carrying ``tool_calls``, ``function_call``, ``refusal`` or ``audio``
    ("" and [] are content).
    "Invalid value for 'content': expected a string, got null."
      (param ``messages.[i].content``, code null)
    developer messages: "Missing required parameter: 'messages[i].content'."
  tool_call_arguments_are_json_objects: an assistant tool call's ``arguments`` is a JSON
    object. OpenAI stores the string as it is, but OpenRouter must turn it into
    Anthropic's ``tool_use.input`` object, and Moonshot refuses it outright, in the
    words used here: "Invalid 'messages[i].tool_calls[j].function.arguments': arguments
    must be a valid JSON object string." (code ``invalid_value``)

Tool call pairing
  tool_calls_are_answered: an assistant message with ``tool_calls`` is followed, before
    the next non-tool message (or the end of the list), by a tool message for each
    ``tool_call_id``, in any order. "An assistant message with 'tool_calls' must be
    followed by tool messages responding to each 'tool_call_id'. The following
    tool_call_ids did not have response messages: ID, ID" (param
    ``messages.[i].role``, ``i`` the assistant message; code null)
  tool_messages_answer_a_call: a tool message answers a call of the assistant message
    right before its run of tool messages, and no call twice. "Invalid parameter:
    messages with role 'tool' must be a response to a preceeding message with
    'tool_calls'." (param ``messages.[i].role``, ``i`` the tool message; code null)

Where the words come from: OpenAI's schema errors ("Missing required parameter",
"Invalid type for", "Invalid value", "empty array", the function name pattern, the
role list, null content) as recorded from the live API in public issue reports and in a
public conformance suite that pins OpenAI's envelopes; the two pairing errors and the
``tool_choice`` errors from many public issue reports of OpenAI 400s (OpenAI has also
been seen to spell it "preceding"); "tools: Tool names must be unique." from Anthropic's
400s relayed by OpenRouter and Claude clients. Anthropic words the pairing errors
differently ("tool_use ids were found without tool_result blocks immediately after",
"unexpected tool_use_id found in tool_result blocks"); the rule is the same.
"""

from __future__ import annotations

from collections.abc import Callable

from langchain_fusion.testing.script import JsonDict
from langchain_fusion.testing.validation.message_rules import (
    assistant_tool_calls_are_well_formed,
    message_roles_are_known,
    messages_have_content,
    tool_call_arguments_are_json_objects,
    tool_calls_are_answered,
    tool_messages_answer_a_call,
    tool_messages_name_their_call,
)
from langchain_fusion.testing.validation.refusal import Refusal
from langchain_fusion.testing.validation.tool_rules import (
    function_names_are_valid,
    tool_choice_is_well_formed,
    tool_choice_names_a_declared_function,
    tool_choice_needs_tools,
    tool_names_are_unique,
    tools_are_well_formed,
)

__all__ = ["CHECKS", "Check", "Refusal", "find_refusal"]

Check = Callable[[JsonDict], Refusal | None]


def find_refusal(body: JsonDict) -> Refusal | None:
    """The first rule ``body`` breaks (in `CHECKS` order), or None for a valid request."""
    for check in CHECKS:
        refusal = check(body)
        if refusal is not None:
            return refusal
    return None


CHECKS: tuple[Check, ...] = (
    # Shape first, as OpenAI's schema validation runs before anything reads meaning.
    message_roles_are_known,
    assistant_tool_calls_are_well_formed,
    tool_messages_name_their_call,
    tools_are_well_formed,
    function_names_are_valid,
    tool_choice_is_well_formed,
    tool_choice_needs_tools,
    tool_choice_names_a_declared_function,
    tool_names_are_unique,
    # OpenAI reports missing content after every other field check.
    messages_have_content,
    tool_call_arguments_are_json_objects,
    tool_calls_are_answered,
    tool_messages_answer_a_call,
)
"""Every strict rule, in the order `find_refusal` checks them."""
