"""`POST /v1/messages`: Anthropic's Messages API, with the `fusion` plugin (or the
`openrouter/fusion` alias) as hosted, so that the `anthropic` SDK and tools built on it
work against this gateway.

The request is read as the Chat Completions request it means (`messages_request.py`), so
it is admitted like one (the policy, the worst case, the caller's key); the answer, its
stream (Anthropic's event types) and its errors are in Anthropic's shapes. The server tool
is not offered here, as hosted.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from langchain_fusion.server.admission import admit
from langchain_fusion.server.chat_request import ChatCompletionRequest, prepare
from langchain_fusion.server.errors import GatewayError, from_validation, invalid
from langchain_fusion.server.gateway import Gateway, KeepAlive, with_keepalive
from langchain_fusion.server.messages_request import as_chat_request
from langchain_fusion.server.meter import RunRecorder, Usage
from langchain_fusion.server.routing import find_fusion, label, resolve
from langchain_fusion.server.wire import messages as wire
from langchain_fusion.server.wire.errors import with_availability
from langchain_fusion.server.wire.names import ConcreteNames

logger = logging.getLogger("langchain_fusion.server")


async def messages(gateway: Gateway, request: Request) -> Response:
    """Every refusal and failure in Anthropic's error shape."""
    try:
        return await _messages(gateway, request)
    except GatewayError as failure:
        return JSONResponse(wire.error_body(failure), status_code=failure.status)


def _headers(request: Request) -> Mapping[str, str]:
    """Anthropic clients send their key as `x-api-key`: read it as the bearer token."""
    headers = dict(request.headers)
    if "authorization" not in headers and headers.get("x-api-key"):
        headers["authorization"] = f"Bearer {headers['x-api-key']}"
    return headers


async def _messages(gateway: Gateway, request: Request) -> Response:
    principal = gateway.keys.authenticate(_headers(request))
    body = as_chat_request(await gateway.read_json(request))
    admit(body, "chat")  # the one admission path of the Chat Completions route
    for tool in body.get("tools") or []:
        if tool.get("type") != "function":
            raise invalid("the fusion server tool is not offered on /v1/messages", "tools")
    ask = find_fusion(body["model"], None, body.get("plugins"))
    try:
        parsed = ChatCompletionRequest.model_validate(body)
    except ValidationError as error:
        raise from_validation(error) from None
    recorder = RunRecorder(gateway.policy.prices)
    names = ConcreteNames(gateway.model_names)
    if ask is None:
        raise invalid(
            '/v1/messages answers with fusion here: add the plugin {"id": "fusion"} or use '
            "the model openrouter/fusion",
            "plugins",
        )
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
    runnable: Runnable[LanguageModelInput, BaseMessage]
    runnable = gateway.catalog.chat_for(deliberation, principal.upstream_key)
    outer, requested = label(deliberation.outer), deliberation.models()
    kwargs: dict[str, Any] = dict(call.kwargs)
    gateway.policy.check_budget(worst)
    reservation = await gateway.reserve(principal, worst)
    await gateway.name_models(requested)
    config: Any = {"callbacks": [recorder, names]}
    ident = f"msg_{uuid.uuid4().hex}"

    def spend(final: BaseMessage | None = None) -> Any:
        return recorder.spend()

    if call.stream:
        stream = _stream(gateway, runnable, call, kwargs, config, names, outer, ident, recorder)

        async def settled() -> AsyncIterator[ServerSentEvent]:
            try:
                async for item in stream:
                    yield item
            except Exception as error:
                failure = gateway.failure(error, principal, "messages stream")
                with_availability(failure, error, requested)
                yield wire.event("error", error=wire.error_body(failure)["error"])
            finally:
                await gateway.settle(reservation, recorder.spend())

        return EventSourceResponse(settled(), sep="\n", ping=None)
    try:
        final = await gateway.answer(
            request,
            runnable.ainvoke(call.messages, config, stop=call.stop, **kwargs),
            principal=principal,
            reservation=reservation,
            spend=spend,
            what="messages",
        )
    except GatewayError as failure:
        raise with_availability(failure, failure.__context__, requested) from None
    uses = wire.tool_uses(final)
    content = ([wire.text_block(final.text)] if final.text else []) + uses
    model = names.concrete(outer) or _reported(final) or outer
    used = wire.usage(Usage.of(final, recorder.spend().usd))
    logger.info("messages key=%s model=%s", principal.name, model)
    return JSONResponse(
        wire.message(ident, model, content, wire.stop_reason(final, bool(uses)), used)
    )


def _reported(message: BaseMessage | None) -> str | None:
    name = message.response_metadata.get("model_name") if message is not None else None
    return name if isinstance(name, str) and name else None


async def _stream(
    gateway: Gateway,
    runnable: Runnable[LanguageModelInput, BaseMessage],
    call: Any,
    kwargs: dict[str, Any],
    config: Any,
    names: ConcreteNames,
    outer: str,
    ident: str,
    recorder: RunRecorder,
) -> AsyncIterator[ServerSentEvent]:
    """Anthropic's events: `message_start` (once the concrete model is known), a text
    block's start, deltas and stop, a block per tool use, `message_delta` with the stop
    reason and usage, `message_stop`."""
    started = False
    held: list[str] = []
    total: AIMessageChunk | None = None
    block = 0
    text_open = False

    def start() -> list[ServerSentEvent]:
        model = names.concrete(outer) or _reported(total) or outer
        empty = wire.usage(Usage())
        opening = wire.message(ident, model, [], None, empty)
        return [wire.event("message_start", message=opening)]

    def text(delta: str) -> list[ServerSentEvent]:
        nonlocal text_open
        out = []
        if not text_open:
            text_open = True
            out.append(
                wire.event("content_block_start", index=0, content_block=wire.text_block(""))
            )
        out.append(
            wire.event("content_block_delta", index=0, delta={"type": "text_delta", "text": delta})
        )
        return out

    source = runnable.astream(call.messages, config, stop=call.stop, **kwargs)
    async for piece in with_keepalive(source, gateway.keepalive_s):
        if isinstance(piece, KeepAlive):
            yield wire.event("ping")
            continue
        if not isinstance(piece, AIMessageChunk):
            continue
        total = piece if total is None else total + piece
        if not started:
            if piece.text:
                held.append(piece.text)
            if names.concrete(outer) is None:
                continue  # its first call has not reported the concrete name yet
            started = True
            for item in start() + [e for t in held for e in text(t)]:
                yield item
        elif piece.text:
            for item in text(piece.text):
                yield item
    if not started:
        for item in start():
            yield item
    if text_open:
        yield wire.event("content_block_stop", index=0)
        block = 1
    uses = wire.tool_uses(total)
    for offset, use in enumerate(uses):
        index = block + offset
        opened = {**use, "input": {}}
        yield wire.event("content_block_start", index=index, content_block=opened)
        partial = {"type": "input_json_delta", "partial_json": json.dumps(use["input"])}
        yield wire.event("content_block_delta", index=index, delta=partial)
        yield wire.event("content_block_stop", index=index)
    delta = {
        "stop_reason": wire.stop_reason(total, bool(uses)),
        "stop_sequence": None,
        "container": None,
        "stop_details": None,
    }
    used = wire.usage(Usage.of(total, recorder.spend().usd))
    yield wire.event("message_delta", delta=delta, usage=used)
    yield wire.event("message_stop")
