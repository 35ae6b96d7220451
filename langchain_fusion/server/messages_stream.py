"""The Anthropic Messages stream of one run: `message_start` (once the concrete model is
known), a text block's start, deltas and stop, a block per tool use, `message_delta` with
the stop reason and usage, `message_stop`; pings while the run is quiet."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage
from sse_starlette import ServerSentEvent

from langchain_fusion.server.gateway import Gateway, KeepAlive, with_keepalive
from langchain_fusion.server.meter import RunRecorder, Usage
from langchain_fusion.server.wire import messages as wire
from langchain_fusion.server.wire.names import ConcreteNames


def reported(message: BaseMessage | None) -> str | None:
    """The model an upstream response named."""
    name = message.response_metadata.get("model_name") if message is not None else None
    return name if isinstance(name, str) and name else None


async def anthropic_events(
    gateway: Gateway,
    source: AsyncIterator[Any],
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
        model = names.concrete(outer) or reported(total) or outer
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
