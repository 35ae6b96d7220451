"""`POST /v1/messages`: Anthropic's Messages API, with the `fusion` plugin (or the
`openrouter/fusion` alias) as hosted, or relayed to the model itself without it, so that
the `anthropic` SDK and tools built on it work against this gateway.

The request is read as the Chat Completions request it means (`messages_request.py`), so
it is admitted like one (the policy, the worst case, the caller's key); the answer, its
stream (Anthropic's event types, `messages_stream.py`) and its errors are in Anthropic's
shapes. The server tool is not offered here, as hosted.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from langchain_fusion.server.admission import admit
from langchain_fusion.server.chat_request import ChatCompletionRequest, prepare
from langchain_fusion.server.errors import GatewayError, from_validation, invalid
from langchain_fusion.server.gateway import Gateway
from langchain_fusion.server.messages_plain import plain_call
from langchain_fusion.server.messages_request import as_chat_request
from langchain_fusion.server.messages_stream import anthropic_events, reported
from langchain_fusion.server.meter import RunRecorder, Usage
from langchain_fusion.server.routing import find_fusion, label, resolve
from langchain_fusion.server.stream_redaction import redacted_chunks
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
    if ask is None:
        plain = plain_call(gateway, principal, body)
        runnable, messages, stop, kwargs = plain.runnable, plain.messages, plain.stop, plain.kwargs
        worst, outer, requested = plain.worst, body["model"], [body["model"]]
    else:
        if body.pop("reasoning", None) is not None:
            raise invalid("thinking is not supported with the fusion plugin here", "thinking")
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
        runnable = gateway.catalog.chat_for(deliberation, principal.upstream_key)
        messages, stop, kwargs = call.messages, call.stop, dict(call.kwargs)
        outer, requested = label(deliberation.outer), deliberation.models()
    gateway.policy.check_budget(worst)
    reservation = await gateway.reserve(principal, worst)
    await gateway.name_models(requested, principal)
    recorder = RunRecorder(gateway.policy.prices)
    names = ConcreteNames(gateway.model_names)
    callbacks: list[Any] = [recorder, names, *gateway.tracing.callbacks()]
    if ask is not None:  # the guard first: see chat_completions._Run
        callbacks.insert(0, gateway.policy.guard(deliberation, worst))
    config: Any = {"callbacks": callbacks}
    ident = f"msg_{uuid.uuid4().hex}"

    if body.get("stream"):
        source = redacted_chunks(runnable.astream(messages, config, stop=stop, **kwargs))
        stream = anthropic_events(gateway, source, names, outer, ident, recorder)

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
            runnable.ainvoke(messages, config, stop=stop, **kwargs),
            principal=principal,
            reservation=reservation,
            spend=lambda _: recorder.spend(),
            what="messages",
        )
    except GatewayError as failure:
        raise with_availability(failure, failure.__context__, requested) from None
    uses = wire.tool_uses(final)
    content = ([wire.text_block(final.text)] if final.text else []) + uses
    model = names.concrete(outer) or reported(final) or outer
    used = wire.usage(Usage.of(final, recorder.spend().usd))
    logger.info("messages key=%s model=%s fusion=%s", principal.name, model, ask is not None)
    return JSONResponse(
        wire.message(ident, model, content, wire.stop_reason(final, bool(uses)), used)
    )
