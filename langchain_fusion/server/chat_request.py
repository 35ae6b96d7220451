"""The body of `POST /v1/chat/completions` when fusion is asked for, and its translation
into a `ChatFusion` call.

OpenAI's fields that change the answer are honoured or refused (`n > 1`, a JSON
`response_format`: fusion answers in text); others (`user`, `metadata`, OpenRouter's
`provider`, `models`, ...) are accepted and ignored, so that an existing OpenRouter request
needs no rewrite. A request without fusion never comes here: it is a plain completion,
passed to the backend as it is (`plain.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import BaseMessage, convert_to_messages
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from langchain_fusion.contract.parameters import SERVER_TOOL_TYPE
from langchain_fusion.graph.prompts import FUSION_TOOL_NAME
from langchain_fusion.server import rehydrate
from langchain_fusion.server.errors import invalid
from langchain_fusion.server.loop_controls import (
    MaxToolCalls,
    StopServerToolsWhen,
    as_conditions,
    offers_server_tools,
)
from langchain_fusion.server.routing import FusionAsk

FUSION_CHOICE = {"type": "function", "function": {"name": FUSION_TOOL_NAME}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _FunctionCall(_Strict):
    name: str
    arguments: str


class _ToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: _FunctionCall


class ChatMessage(BaseModel):
    """One message. Unknown keys (`refusal`, `annotations`, ...) come back from clients
    that replay a response; they carry nothing a model needs."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_details: list[dict[str, Any]] | None = None
    """An assistant message's reasoning records; fusion calls are rehydrated from them."""

    @model_validator(mode="after")
    def _shape(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs 'tool_call_id'")
        if self.role != "assistant" and self.content is None:
            raise ValueError(f"a {self.role} message needs 'content'")
        records = any(rehydrate.is_fusion_record(d) for d in self.reasoning_details or [])
        if (
            self.role == "assistant"
            and self.content is None
            and not self.tool_calls
            and not records
        ):
            raise ValueError("an assistant message needs 'content' or 'tool_calls'")
        if isinstance(self.content, list):
            for part in self.content:
                if not isinstance(part.get("type"), str):
                    raise ValueError("each content part needs a 'type'")
        return self

    @property
    def text(self) -> str:
        """The message's text parts, joined."""
        if isinstance(self.content, str):
            return self.content
        parts = self.content or []
        return "".join(str(p.get("text") or "") for p in parts if p.get("type") == "text")


class _FunctionSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _FunctionTool(_Strict):
    type: Literal["function"]
    function: _FunctionSpec


class _NamedFunction(_Strict):
    name: str


class _NamedToolChoice(_Strict):
    type: Literal["function"]
    function: _NamedFunction


class _ServerToolChoice(_Strict):
    """`{"type": "openrouter:fusion"}`: force the server tool, by its hosted name."""

    type: Literal["openrouter:fusion"]


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """A chat completion that asks for fusion (alias, server tool or plugin)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    """Function tools, and the `openrouter:fusion` server tool (read by `routing.py`)."""
    tool_choice: (
        Literal["none", "auto", "required"] | _NamedToolChoice | _ServerToolChoice | None
    ) = None
    plugins: list[dict[str, Any]] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: _StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    response_format: dict[str, Any] | None = None
    max_tool_calls: MaxToolCalls | None = None  # the outer loop's (loop_controls.py)
    stop_server_tools_when: StopServerToolsWhen | None = None

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for index, tool in enumerate(tools or []):
            kind = tool.get("type")
            if kind == SERVER_TOOL_TYPE:
                continue
            if kind != "function":
                raise ValueError(
                    f"tools[{index}]: type {kind!r} is not supported with fusion here (function "
                    f"tools and {SERVER_TOOL_TYPE} are)"
                )
            _FunctionTool.model_validate(tool)
        return tools

    @model_validator(mode="after")
    def _supported(self) -> ChatCompletionRequest:
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("'stop' takes at most 4 sequences")
        kind = (self.response_format or {}).get("type", "text")
        if kind != "text":
            raise ValueError(
                f"response_format {kind!r} is not supported with fusion (it answers in text); "
                "ask for structured output through a function tool"
            )
        return self

    @property
    def function_tools(self) -> list[dict[str, Any]]:
        return [tool for tool in self.tools or [] if tool.get("type") == "function"]

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


@dataclass
class ChatCall:
    """A validated request, ready for `ChatFusion`."""

    messages: list[BaseMessage]
    stop: list[str] | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    enabled: bool = True
    """False when fusion already ran in this turn (a record sent back) or is turned off."""


def prepare(request: ChatCompletionRequest, ask: FusionAsk) -> ChatCall:
    """Check what the schema cannot, and translate the request for `ChatFusion`."""
    if not any(m.role == "user" and m.text.strip() for m in request.messages):
        raise invalid("'messages' needs a user message with text", "messages")
    known_calls: set[str] = set()
    for index, message in enumerate(request.messages):
        known_calls.update(call.id for call in message.tool_calls or [])
        if message.role == "tool" and message.tool_call_id not in known_calls:
            raise invalid(
                f"messages[{index}]: tool_call_id {message.tool_call_id!r} answers no earlier "
                "assistant tool call",
                f"messages[{index}].tool_call_id",
            )
    functions = request.function_tools
    names = [tool["function"]["name"] for tool in functions]
    if FUSION_TOOL_NAME in names:
        raise invalid(f"the tool name {FUSION_TOOL_NAME!r} is reserved", "tools")
    if len(set(names)) != len(names):
        raise invalid("tool names must be unique", "tools")

    choice: Any = request.tool_choice
    if isinstance(choice, _NamedToolChoice):
        name = choice.function.name
        if name != FUSION_TOOL_NAME and name not in names:
            raise invalid(f"tool_choice names {name!r}, which is not in 'tools'", "tool_choice")
        choice = choice.model_dump()
    elif isinstance(choice, _ServerToolChoice):
        choice = FUSION_CHOICE

    messages, rehydrated = _messages(request)
    kwargs: dict[str, Any] = {}
    if functions:
        kwargs["tools"] = [{k: v for k, v in tool.items() if v is not None} for tool in functions]
    if choice is not None:
        kwargs["tool_choice"] = choice
    # The request's sampling settings are the outer model's.
    for name in ("temperature", "top_p", "seed"):
        if (value := getattr(request, name)) is not None:
            kwargs[name] = value
    if request.output_limit is not None:
        kwargs["max_tokens"] = request.output_limit
    enabled = (
        ask.enabled
        and not rehydrated
        and offers_server_tools(request.max_tool_calls, request.stop_server_tools_when)
    )
    if not enabled:
        kwargs["fusion_enabled"] = False
    if request.stop_server_tools_when:
        kwargs["stop_server_tools_when"] = as_conditions(request.stop_server_tools_when)
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    return ChatCall(
        messages=messages,
        stop=stop or None,
        kwargs=kwargs,
        stream=request.stream,
        include_usage=bool(request.stream_options and request.stream_options.include_usage),
        enabled=enabled,
    )


def _messages(request: ChatCompletionRequest) -> tuple[list[BaseMessage], bool]:
    """LangChain messages, fusion records put back as calls and results; and whether one
    of them belongs to the current turn (after the last user message)."""
    last_user = max(i for i, m in enumerate(request.messages) if m.role == "user")
    out: list[BaseMessage] = []
    this_turn = False
    prompt = ""
    for index, message in enumerate(request.messages):
        if message.role == "user":
            prompt = message.text
        records = [d for d in message.reasoning_details or [] if rehydrate.is_fusion_record(d)]
        for position, record in enumerate(records):
            out += rehydrate.from_record(record, f"{index}_{position}", prompt)
            this_turn = this_turn or index > last_user
        data = message.model_dump(exclude_none=True, exclude={"reasoning_details"})
        if message.role == "assistant" and not data.get("content") and not data.get("tool_calls"):
            continue  # a record alone: the pair above is the whole turn
        try:
            out += convert_to_messages([{"content": "", **data}])
        except ValueError as error:
            raise invalid(f"messages[{index}]: {error}", f"messages[{index}]") from None
    return out, this_turn
