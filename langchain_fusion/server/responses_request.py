"""The body of `POST /v1/responses`, and its translation into a chat model call.

`input` is a string or a list of items: messages (`input_text` / `output_text` parts or a
string), `function_call` and `function_call_output` items, and `openrouter:fusion` items
from an earlier response, which are put back as the fusion call and its result (and,
after the last user message, mean fusion already ran in this turn). The server keeps no
state, as on the hosted service: `previous_response_id` and `store: true` are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.messages.tool import tool_call
from pydantic import BaseModel, ConfigDict, Field, model_validator

from langchain_fusion.contract.parameters import SERVER_TOOL_TYPE
from langchain_fusion.graph.prompts import FUSION_TOOL_NAME
from langchain_fusion.server import rehydrate
from langchain_fusion.server.chat_request import FUSION_CHOICE
from langchain_fusion.server.errors import invalid
from langchain_fusion.server.loop_controls import (
    MaxToolCalls,
    StopServerToolsWhen,
    as_conditions,
    offers_server_tools,
)


class _FunctionTool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ResponsesRequest(BaseModel):
    """OpenAI's Responses fields that this server honours; others are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    plugins: list[dict[str, Any]] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    stream: bool = False
    store: bool | None = None
    previous_response_id: str | None = None
    text: dict[str, Any] | None = None
    max_tool_calls: MaxToolCalls | None = None  # the outer loop's (loop_controls.py)
    stop_server_tools_when: StopServerToolsWhen | None = None

    @model_validator(mode="after")
    def _supported(self) -> ResponsesRequest:
        if self.previous_response_id is not None:
            raise ValueError(
                "previous_response_id is not supported: this server keeps no responses; send "
                "the earlier output items in 'input'"
            )
        if self.store:
            raise ValueError("store: true is not supported: this server keeps no responses")
        kind = ((self.text or {}).get("format") or {}).get("type", "text")
        if kind != "text":
            raise ValueError(f"text.format {kind!r} is not supported: the answer is text")
        for index, tool in enumerate(self.tools or []):
            if tool.get("type") == SERVER_TOOL_TYPE:
                continue
            if tool.get("type") != "function":
                raise ValueError(
                    f"tools[{index}]: type {tool.get('type')!r} is not supported here (function "
                    f"tools and {SERVER_TOOL_TYPE} are)"
                )
            _FunctionTool.model_validate(tool)
        return self


@dataclass
class ResponsesCall:
    """A validated Responses request, ready for a chat model."""

    messages: list[BaseMessage]
    kwargs: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)
    """The caller's function tools, in Chat Completions form."""
    enabled: bool = True
    stream: bool = False


def prepare(request: ResponsesRequest, *, fusion_enabled: bool = True) -> ResponsesCall:
    """The chat messages and call options of a Responses request (400 on bad input)."""
    tools: list[dict[str, Any]] = [
        {
            "type": "function",
            "function": {
                k: v
                for k, v in {
                    "name": tool["name"],
                    "description": tool.get("description"),
                    "parameters": tool.get("parameters"),
                }.items()
                if v is not None
            },
        }
        for tool in request.tools or []
        if tool.get("type") == "function"
    ]
    names = [tool["function"]["name"] for tool in tools]
    if FUSION_TOOL_NAME in names:
        raise invalid(f"the tool name {FUSION_TOOL_NAME!r} is reserved", "tools")
    if len(set(names)) != len(names):
        raise invalid("tool names must be unique", "tools")
    messages, this_turn = input_messages(request)
    kwargs: dict[str, Any] = {}
    if tools:
        kwargs["tools"] = tools
    choice = _choice(request.tool_choice, names)
    if choice is not None:
        kwargs["tool_choice"] = choice
    for name in ("temperature", "top_p"):
        if (value := getattr(request, name)) is not None:
            kwargs[name] = value
    if request.max_output_tokens is not None:
        kwargs["max_tokens"] = request.max_output_tokens
    enabled = (
        fusion_enabled
        and not this_turn
        and offers_server_tools(request.max_tool_calls, request.stop_server_tools_when)
    )
    if request.stop_server_tools_when:
        kwargs["stop_server_tools_when"] = as_conditions(request.stop_server_tools_when)
    return ResponsesCall(
        messages=messages, kwargs=kwargs, tools=tools, enabled=enabled, stream=request.stream
    )


def _choice(choice: Any, names: list[str]) -> Any:
    if choice is None or isinstance(choice, str):
        return choice
    kind = choice.get("type")
    if kind == SERVER_TOOL_TYPE:
        return FUSION_CHOICE
    if kind == "function" and isinstance(choice.get("name"), str):
        name = choice["name"]
        if name != FUSION_TOOL_NAME and name not in names:
            raise invalid(f"tool_choice names {name!r}, which is not in 'tools'", "tool_choice")
        return {"type": "function", "function": {"name": name}}
    raise invalid(f"tool_choice {json.dumps(choice)} is not supported here", "tool_choice")


def input_messages(request: ResponsesRequest) -> tuple[list[BaseMessage], bool]:
    """The conversation, and whether a fusion item follows the last user message."""
    items: list[dict[str, Any]] = (
        [{"type": "message", "role": "user", "content": request.input}]
        if isinstance(request.input, str)
        else request.input
    )
    kinds = [item.get("type") or ("message" if "role" in item else None) for item in items]
    users = [i for i, (k, item) in enumerate(zip(kinds, items, strict=True)) if _is_user(k, item)]
    if not users or not any(_text(items[i].get("content")).strip() for i in users):
        raise invalid("'input' needs a user message with text", "input")
    last_user = users[-1]
    out: list[BaseMessage] = [SystemMessage(request.instructions)] if request.instructions else []
    pending: AIMessage | None = None
    calls: set[str] = set()
    this_turn = False
    prompt = ""

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            out.append(pending)
            pending = None

    for index, (kind, item) in enumerate(zip(kinds, items, strict=True)):
        where = f"input[{index}]"
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise invalid(f"{where}.role: unknown role {role!r}", f"{where}.role")
            flush()
            text = _text(item.get("content"))
            if role == "user":
                prompt = text
            if role == "assistant":
                pending = AIMessage(text)
            else:
                out += convert_to_messages([{"role": role, "content": _content(item, where)}])
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise invalid(f"{where}: a function_call needs 'call_id' and 'name'", where)
            try:
                args = json.loads(item.get("arguments") or "{}")
            except (TypeError, ValueError):
                raise invalid(f"{where}.arguments: not valid JSON", f"{where}.arguments") from None
            if not isinstance(args, dict):
                raise invalid(f"{where}.arguments: expected a JSON object", f"{where}.arguments")
            pending = pending or AIMessage("")
            pending.tool_calls.append(tool_call(name=name, args=args, id=call_id))
            calls.add(call_id)
        elif kind == "function_call_output":
            flush()
            call_id = item.get("call_id")
            if call_id not in calls:
                raise invalid(
                    f"{where}: call_id {call_id!r} answers no earlier function_call", where
                )
            out.append(ToolMessage(_text(item.get("output")), tool_call_id=str(call_id)))
        elif kind == SERVER_TOOL_TYPE:
            flush()
            out += rehydrate.from_item(item, prompt)
            this_turn = this_turn or index > last_user
        elif kind == "reasoning":
            continue  # another model's reasoning: nothing the outer model can use
        else:
            raise invalid(f"{where}: input items of type {kind!r} are not supported here", where)
    flush()
    return out, this_turn


def _is_user(kind: Any, item: dict[str, Any]) -> bool:
    return kind == "message" and item.get("role") == "user"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, dict) and part.get("type") in ("input_text", "output_text", "text")
        )
    return ""


def _content(item: dict[str, Any], where: str) -> str | list[dict[str, Any]]:
    """A message's content for a chat model: text parts, and images as `image_url`."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"{where}.content: expected a string or a list of parts", f"{where}.content")
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        else:
            raise invalid(f"{where}.content: parts of type {kind!r} are not supported here", where)
    return parts
