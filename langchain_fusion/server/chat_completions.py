"""`POST /v1/chat/completions` with fusion: the alias, the server tool or the plugin.

The answer is a chat completion whose `model` is the concrete outer model. Each fusion
call rides in the assistant message's `reasoning_details` as a
`reasoning.server_tool_call` record (send the message back and the next request
rehydrates it instead of deliberating again in the same turn), and the last result also
in a top-level `fusion` field, which OpenAI SDKs keep as an extra attribute
(`completion.model_extra["fusion"]`). `usage` sums every inner call.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from langchain_fusion.chat_models import FUSION_ALIASES, ChatFusion
from langchain_fusion.graph.prompts import FUSION_TOOL_NAME
from langchain_fusion.server import plain
from langchain_fusion.server.chat_request import ChatCall, ChatCompletionRequest, prepare
from langchain_fusion.server.errors import from_validation
from langchain_fusion.server.gateway import (
    SSE_HEADERS,
    Gateway,
    KeepAlive,
    with_keepalive,
)
from langchain_fusion.server.keys import Principal
from langchain_fusion.server.ledger import Reservation
from langchain_fusion.server.meter import RunRecorder, Usage
from langchain_fusion.server.rehydrate import server_tool_record
from langchain_fusion.server.routing import find_fusion, label, resolve

logger = logging.getLogger("langchain_fusion.server")


async def chat_completions(gateway: Gateway, request: Request) -> Response:
    """Validate, check the policy, hold the worst case, then answer or stream."""
    principal = gateway.authenticate(request)
    body = await gateway.read_json(request)
    ask = find_fusion(body["model"], body.get("tools"), body.get("plugins"))
    if ask is None:
        return await plain.relay(gateway, request, principal, body)
    try:
        parsed = ChatCompletionRequest.model_validate(body)
    except ValidationError as error:
        raise from_validation(error) from None
    call = prepare(parsed, ask)
    deliberation = resolve(ask, gateway.catalog.alias_defaults(ask.alias))
    gateway.policy.check_deliberation(deliberation)
    worst = gateway.policy.fusion_worst_case(
        deliberation,
        call.messages,
        tools=parsed.function_tools,
        outer_max_tokens=parsed.output_limit or deliberation.defaults.max_tokens,
        enabled=call.enabled,
    )
    gateway.policy.check_budget(worst)
    chat = gateway.catalog.chat_for(deliberation, principal.upstream_key)
    reservation = await gateway.reserve(principal, worst)
    recorder = RunRecorder(gateway.policy.prices)
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    outer = label(deliberation.outer)
    if call.stream:
        stream = _sse(gateway, chat, call, recorder, reservation, principal, ident, created, outer)
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
    message = await gateway.answer(
        request,
        chat.ainvoke(call.messages, {"callbacks": [recorder]}, stop=call.stop, **call.kwargs),
        principal=principal,
        reservation=reservation,
        spend=lambda _: recorder.spend(),
        what="chat completion",
    )
    completion = _completion(message, recorder, ident, created, outer)
    logger.info(
        "chat.completions key=%s model=%s fusion_calls=%d tokens=%s",
        principal.name,
        completion["model"],
        len(recorder.fusion_calls()),
        completion["usage"]["total_tokens"],
    )
    return JSONResponse(completion)


def _tool_calls(message: BaseMessage) -> list[dict[str, Any]]:
    return [
        {
            "id": call["id"] or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["args"])},
        }
        for call in getattr(message, "tool_calls", None) or []
        if call["name"] != FUSION_TOOL_NAME
    ]


def _finish_reason(message: BaseMessage, has_tool_calls: bool) -> str:
    if has_tool_calls:
        return "tool_calls"
    reason = message.response_metadata.get("finish_reason")
    return reason if reason in ("stop", "length", "content_filter") else "stop"


def _model_name(message: BaseMessage, fallback: str) -> str:
    name = message.response_metadata.get("model_name")
    return name if isinstance(name, str) and name and name not in FUSION_ALIASES else fallback


def _records(recorder: RunRecorder) -> list[dict[str, Any]]:
    return [server_tool_record(call, i) for i, call in enumerate(recorder.fusion_calls())]


def _completion(
    message: AIMessage, recorder: RunRecorder, ident: str, created: int, outer: str
) -> dict[str, Any]:
    tool_calls = _tool_calls(message)
    body: dict[str, Any] = {"role": "assistant", "content": message.text or None, "refusal": None}
    if tool_calls:
        body["tool_calls"] = tool_calls
    elif body["content"] is None:
        body["content"] = ""
    if records := _records(recorder):
        body["reasoning_details"] = records
    choice = {
        "index": 0,
        "message": body,
        "logprobs": None,
        "finish_reason": _finish_reason(message, bool(tool_calls)),
    }
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": _model_name(message, outer),
        "choices": [choice],
        "usage": Usage.of(message, recorder.spend().usd).chat(),
        "system_fingerprint": None,
        "fusion": message.response_metadata.get("fusion_result"),
    }


async def _sse(
    gateway: Gateway,
    chat: ChatFusion,
    call: ChatCall,
    recorder: RunRecorder,
    reservation: Reservation | None,
    principal: Principal,
    ident: str,
    created: int,
    outer: str,
) -> AsyncIterator[bytes]:
    """The completion as `chat.completion.chunk` events. The concrete model is known when
    the outer model finishes: chunks before then name the configured outer model."""
    model = outer

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n".encode()

    def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

    yield event(delta({"role": "assistant", "content": ""}))
    total: AIMessageChunk | None = None
    try:
        source = chat.astream(
            call.messages, {"callbacks": [recorder]}, stop=call.stop, **call.kwargs
        )
        async for piece in with_keepalive(source, gateway.keepalive_s):
            if isinstance(piece, KeepAlive):
                yield b": deliberating\n\n"
                continue
            if not isinstance(piece, AIMessageChunk):
                continue
            total = piece if total is None else total + piece
            if piece.text:
                yield event(delta({"content": piece.text}))
    except Exception as error:
        yield gateway.failure(error, principal, "chat completion stream").sse()
        return
    finally:
        await gateway.settle(reservation, recorder.spend())

    final = total if total is not None else AIMessageChunk(content="")
    tool_calls = _tool_calls(final)
    model = _model_name(final, model)
    if tool_calls:
        yield event(delta({"tool_calls": [{"index": i, **c} for i, c in enumerate(tool_calls)]}))
    if records := _records(recorder):
        yield event(delta({"reasoning_details": records}))
    fusion = final.response_metadata.get("fusion_result")
    yield event(delta({}, _finish_reason(final, bool(tool_calls))), fusion=fusion)
    if call.include_usage:
        yield event([], usage=Usage.of(final, recorder.spend().usd).chat())
    yield b"data: [DONE]\n\n"
