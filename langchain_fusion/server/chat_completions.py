"""`POST /v1/chat/completions` with fusion: the alias, the server tool or the plugin.

The answer is a chat completion (the `openai` SDK's own types, `wire/chat.py`) whose
`model` is the concrete outer model, in the body and in every chunk of a stream. Each
fusion call rides in the assistant message's `reasoning_details` as a
`reasoning.server_tool_call` record (send the message back and the next request
rehydrates it instead of deliberating again in the same turn), and the last result also
in a top-level `fusion` field, which OpenAI SDKs keep as an extra attribute
(`completion.model_extra["fusion"]`). `usage` sums every inner call; a stream always ends
with a chunk carrying it, as hosted (`stream_options.include_usage` changes nothing).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from langchain_fusion.chat_models import FUSION_ALIASES, ChatFusion
from langchain_fusion.graph.budget import BudgetEstimate
from langchain_fusion.server import plain
from langchain_fusion.server.chat_request import ChatCall, ChatCompletionRequest, prepare
from langchain_fusion.server.errors import GatewayError, from_validation
from langchain_fusion.server.gateway import Gateway, KeepAlive, with_keepalive
from langchain_fusion.server.keys import Principal
from langchain_fusion.server.ledger import Reservation
from langchain_fusion.server.meter import RunRecorder, Usage
from langchain_fusion.server.rehydrate import server_tool_record
from langchain_fusion.server.routing import find_fusion, label, resolve
from langchain_fusion.server.stream_redaction import redacted_chunks
from langchain_fusion.server.wire.chat import (
    ChunkWriter,
    completion,
    dump,
    finish_reason,
    tool_calls,
)
from langchain_fusion.server.wire.errors import with_availability
from langchain_fusion.server.wire.metadata import with_metadata
from langchain_fusion.server.wire.names import ConcreteNames
from langchain_fusion.server.wire.usage import chat_usage

logger = logging.getLogger("langchain_fusion.server")


@dataclass
class _Run:
    """One admitted fusion chat completion."""

    chat: ChatFusion
    call: ChatCall
    recorder: RunRecorder
    names: ConcreteNames
    reservation: Reservation | None
    principal: Principal
    outer: str
    requested: list[str]
    extras: dict[str, Any]
    """Top-level fields the hosted API adds (`openrouter_metadata`, when asked for)."""
    handlers: list[Any]
    """The run's in-run spend guard (first: a call it refuses is seen by no other
    handler, so it is not counted in flight), and its LangSmith tracer (through
    redaction) when tracing is on."""

    @property
    def config(self) -> dict[str, Any]:
        return {"callbacks": [*self.handlers, self.recorder, self.names]}


async def chat_completions(gateway: Gateway, request: Request) -> Response:
    """Validate, check the policy, hold the worst case, then answer or stream."""
    principal = gateway.authenticate(request)
    body = await gateway.read_json(request)
    ask = find_fusion(body["model"], body.get("tools"), body.get("plugins"))
    if ask is None:
        return await plain.relay(gateway, request, principal, body)
    deliberation = resolve(ask, gateway.catalog.alias_defaults(ask.alias))
    gateway.policy.check_deliberation(deliberation)

    def admitted() -> tuple[ChatCompletionRequest, ChatCall, BudgetEstimate]:
        try:
            parsed = ChatCompletionRequest.model_validate(body)
        except ValidationError as error:
            raise from_validation(error) from None
        call = prepare(parsed, ask)
        worst = gateway.policy.fusion_worst_case(
            deliberation,
            call.messages,
            tools=parsed.function_tools,
            outer_max_tokens=parsed.output_limit or deliberation.defaults.max_tokens,
            enabled=call.enabled,
        )
        return parsed, call, worst

    parsed, call, worst = await gateway.off_loop(request, admitted)
    gateway.policy.check_budget(worst)
    chat = gateway.catalog.chat_for(deliberation, principal.upstream_key)
    reservation = await gateway.reserve(principal, worst)
    requested = deliberation.models()
    await gateway.name_models(requested, principal)
    run = _Run(
        chat=chat,
        call=call,
        recorder=RunRecorder(gateway.policy.prices),
        names=ConcreteNames(gateway.model_names),
        reservation=reservation,
        principal=principal,
        outer=label(deliberation.outer),
        requested=requested,
        extras=with_metadata(
            {},
            request.headers,
            parsed.model,
            requested,
            fusion=True,
            byok=principal.upstream_key is not None,
        ),
        handlers=[gateway.policy.guard(deliberation, worst), *gateway.tracing.callbacks()],
    )
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if call.stream:
        return EventSourceResponse(_sse(gateway, run, ident, created), sep="\n", ping=None)
    try:
        message = await gateway.answer(
            request,
            chat.ainvoke(call.messages, run.config, stop=call.stop, **call.kwargs),  # type: ignore[arg-type]
            principal=principal,
            reservation=reservation,
            spend=lambda _: run.recorder.spend(),
            what="chat completion",
        )
    except GatewayError as failure:
        raise with_availability(failure, failure.__context__, requested) from None
    body_out = dump(_completion(run, message, ident, created))
    logger.info(
        "chat.completions key=%s model=%s fusion_calls=%d tokens=%s",
        principal.name,
        body_out["model"],
        len(run.recorder.fusion_calls()),
        body_out["usage"]["total_tokens"],
    )
    return JSONResponse(body_out)


def _model_name(message: BaseMessage | None, fallback: str) -> str:
    name = message.response_metadata.get("model_name") if message is not None else None
    return name if isinstance(name, str) and name and name not in FUSION_ALIASES else fallback


def _records(recorder: RunRecorder) -> list[dict[str, Any]]:
    return [server_tool_record(call, i) for i, call in enumerate(recorder.fusion_calls())]


def _completion(run: _Run, message: AIMessage, ident: str, created: int) -> Any:
    usage = chat_usage(Usage.of(message, run.recorder.spend().usd), run.recorder)
    return completion(
        ident=ident,
        created=created,
        model=run.names.concrete(run.outer) or _model_name(message, run.outer),
        message=message,
        records=_records(run.recorder),
        usage=usage,
        extras={**_fusion(message), **run.extras},
    )


def _fusion(message: BaseMessage) -> dict[str, Any]:
    """The top-level `fusion` field: the last result, when fusion ran."""
    result = message.response_metadata.get("fusion_result")
    return {} if result is None else {"fusion": result}


def _event(data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data))


async def _sse(
    gateway: Gateway, run: _Run, ident: str, created: int
) -> AsyncIterator[ServerSentEvent]:
    """The completion as `chat.completion.chunk` events, every one naming the concrete
    outer model: known before the stream (an earlier request, the upstream's model list)
    or, on a model's first request, from its first streamed chunk, which the first chunk
    here waits for (pings go out meanwhile); the last one carries usage."""
    writer: ChunkWriter | None = None
    held: list[str] = []
    total: AIMessageChunk | None = None

    def opened() -> list[ServerSentEvent]:
        nonlocal writer
        model = run.names.concrete(run.outer) or _model_name(total, run.outer)
        writer = ChunkWriter(ident, created, model)
        first = [_event(dump(writer.delta({"role": "assistant", "content": ""})))]
        return first + [_event(dump(writer.delta({"content": text}))) for text in held]

    try:
        source = redacted_chunks(  # a secret split over deltas is matched whole
            run.chat.astream(
                run.call.messages,
                run.config,  # type: ignore[arg-type]
                stop=run.call.stop,
                **run.call.kwargs,
            )
        )
        async for piece in with_keepalive(source, gateway.keepalive_s):
            if isinstance(piece, KeepAlive):
                yield ServerSentEvent(comment="deliberating")
                continue
            if not isinstance(piece, AIMessageChunk):
                continue
            total = piece if total is None else total + piece
            if writer is None:
                if piece.text:
                    held.append(piece.text)
                if run.names.concrete(run.outer) is None:
                    continue  # its first call has not reported the concrete name yet
                for event in opened():
                    yield event
            elif piece.text:
                yield _event(dump(writer.delta({"content": piece.text})))
    except Exception as error:
        failure = gateway.failure(error, run.principal, "chat completion stream")
        with_availability(failure, error, run.requested)
        if writer is None:
            for event in opened():
                yield event
        assert writer is not None
        yield _event(writer.error(failure))
        return
    finally:
        await gateway.settle(run.reservation, run.recorder.spend())

    if writer is None:
        for event in opened():
            yield event
    assert writer is not None
    final = total if total is not None else AIMessageChunk(content="")
    calls = tool_calls(final)
    if calls:
        indexed = [{"index": i, **c} for i, c in enumerate(calls)]
        yield _event(dump(writer.delta({"tool_calls": indexed})))
    if records := _records(run.recorder):
        yield _event(dump(writer.delta({"reasoning_details": records})))
    last = writer.delta({}, finish_reason(final, bool(calls)))
    yield _event({**dump(last), **_fusion(final), **run.extras})
    usage = chat_usage(Usage.of(final, run.recorder.spend().usd), run.recorder)
    yield _event(dump(writer.chunk([], usage=usage)))
    yield ServerSentEvent(data="[DONE]")
