"""The Responses API's objects as the hosted schema has them: the response, its output
items (the assistant message, a function call, the `openrouter:fusion` item) and parts.

The response carries `frequency_penalty`, `presence_penalty` and `completed_at` always
(required, `null` until known); the fusion item carries `failure_reason` and `error` only
when the run failed (a string or no field: never `null`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from langchain_core.messages import BaseMessage
from pydantic import Field

from langchain_fusion.server.wire.base import WireModel
from langchain_fusion.server.wire.usage import ResponsesUsage

ItemStatus = Literal["in_progress", "completed", "incomplete"]


class OutputText(WireModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    logprobs: list[dict[str, Any]] = Field(default_factory=list)


class MessageItem(WireModel):
    type: Literal["message"] = "message"
    id: str = Field(default_factory=lambda: f"msg_{uuid.uuid4().hex}")
    role: Literal["assistant"] = "assistant"
    status: ItemStatus = "completed"
    content: list[OutputText] = Field(default_factory=list)


class FunctionCallItem(WireModel):
    type: Literal["function_call"] = "function_call"
    id: str = Field(default_factory=lambda: f"fc_{uuid.uuid4().hex}")
    call_id: str
    name: str
    arguments: str
    status: ItemStatus = "completed"


class FusionFailedModel(WireModel):
    model: str
    error: str
    status_code: int | None = None


class FusionResponse(WireModel):
    model: str
    content: str | None = None


class FusionSource(WireModel):
    url: str
    title: str


class FusionItem(WireModel):
    """`OutputFusionServerToolItem`: only `type` and `status` are required."""

    type: Literal["openrouter:fusion"] = "openrouter:fusion"
    id: str | None = None
    status: ItemStatus
    analysis: dict[str, Any] | None = None
    responses: list[FusionResponse] | None = None
    failed_models: list[FusionFailedModel] | None = None
    sources: list[FusionSource] | None = None
    failure_reason: str | None = None
    error: str | None = None


OutputItem = Annotated[MessageItem | FunctionCallItem | FusionItem, Field(discriminator="type")]


class ResponseError(WireModel):
    code: str
    message: str


class IncompleteDetails(WireModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseObject(WireModel):
    """`OpenResponsesResult`: the required fields first (nullable ones included)."""

    id: str = Field(default_factory=lambda: f"resp_{uuid.uuid4().hex}")
    object: Literal["response"] = "response"
    created_at: int = Field(default_factory=lambda: int(time.time()))
    completed_at: int | None
    status: Literal["in_progress", "completed", "incomplete", "failed", "cancelled", "queued"]
    model: str
    output: list[OutputItem]
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    instructions: str | list[Any] | None
    metadata: dict[str, str] | None
    temperature: float | None
    top_p: float | None
    presence_penalty: float | None
    frequency_penalty: float | None
    tools: list[dict[str, Any]]
    tool_choice: Any
    parallel_tool_calls: bool
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    text: dict[str, Any] | None = None
    store: bool | None = None
    background: bool | None = None
    previous_response_id: str | None = None
    truncation: str | None = None
    usage: ResponsesUsage | None = None
    openrouter_metadata: dict[str, Any] | None = None


def new_response(request: Mapping[str, Any], model: str) -> ResponseObject:
    """A response in progress, echoing the request's settings as the hosted API does (its
    `tools` are the caller's function tools: the schema lists no server tool there)."""
    return ResponseObject(
        completed_at=None,
        status="in_progress",
        model=model,
        output=[],
        error=None,
        incomplete_details=None,
        instructions=request.get("instructions"),
        metadata=request.get("metadata") or {},
        temperature=request.get("temperature"),
        top_p=request.get("top_p"),
        presence_penalty=request.get("presence_penalty"),
        frequency_penalty=request.get("frequency_penalty"),
        tools=[t for t in request.get("tools") or [] if t.get("type") == "function"],
        tool_choice=request.get("tool_choice") or "auto",
        parallel_tool_calls=request.get("parallel_tool_calls", True) is not False,
        max_output_tokens=request.get("max_output_tokens"),
        max_tool_calls=request.get("max_tool_calls"),
        text={"format": {"type": "text"}},
        store=False,
        background=False,
        truncation="disabled",
    )


def message_item(
    text: str, *, status: ItemStatus = "completed", ident: str | None = None
) -> MessageItem:
    content = [] if status == "in_progress" else [OutputText(text=text)]
    if ident is None:
        return MessageItem(status=status, content=content)
    return MessageItem(id=ident, status=status, content=content)


def function_call_items(message: BaseMessage) -> list[FunctionCallItem]:
    """The caller's tool calls as `function_call` items."""
    return [
        FunctionCallItem(
            call_id=call["id"] or f"call_{uuid.uuid4().hex[:24]}",
            name=call["name"],
            arguments=json.dumps(call["args"]),
        )
        for call in getattr(message, "tool_calls", None) or []
    ]


def finish(response: ResponseObject, message: BaseMessage | None, usage: ResponsesUsage) -> None:
    """Mark a response completed (or incomplete, when the output limit cut the answer)."""
    metadata = message.response_metadata if message is not None else {}
    response.usage = usage
    response.completed_at = int(time.time())
    if metadata.get("finish_reason") == "length":
        response.status = "incomplete"
        response.incomplete_details = IncompleteDetails(reason="max_output_tokens")
    else:
        response.status = "completed"
