"""Streamed text redacted at its source, before any event is built from it.

A secret an upstream writes over several token deltas ("vllm-to", "ken-7f3a…") is in
no single event, so the per-event redaction of `RedactingMiddleware` cannot see it.
Each stream below runs its text through a `StreamRedactor`, one stream per text a client
concatenates (the answer; each panelist's answer and reasoning; each choice's content,
reasoning, refusal and tool-call arguments of a relayed completion), and puts what is
held back out when that stream ends:

- `redacted_chunks`: a `ChatFusion.astream` of message chunks (Chat Completions, Messages);
- `redacted_events`: an `astream_events` stream (Responses): the root model's chunks and
  the `panel.delta` / `panel.reasoning.delta` progress events;
- `RelayRedactor`: the chunks of a plain completion relayed as the backend sent them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import AIMessageChunk

from langchain_fusion.contract import events as contract_events
from langchain_fusion.server.redaction import StreamRedactor

_DELTAS = (contract_events.PANEL_DELTA, contract_events.PANEL_REASONING_DELTA)
_PANEL_ENDS = (contract_events.PANEL_COMPLETED, contract_events.PANEL_FAILED)
_ANSWER = "answer"


def _with_text(chunk: AIMessageChunk, redactor: StreamRedactor[Any], stream: Any) -> Any:
    """`chunk` with its text (a string, or its text blocks) fed through `redactor`."""
    content = chunk.content
    if isinstance(content, str):
        return chunk.model_copy(update={"content": redactor.feed(stream, content)})
    blocks: list[Any] = []
    for block in content:
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            block = {**block, "text": redactor.feed(stream, block["text"])}
        blocks.append(block)
    return chunk.model_copy(update={"content": blocks})


async def redacted_chunks(source: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """`source`'s message chunks with their text redacted; the tail held back at the end
    goes out as one more chunk."""
    redactor: StreamRedactor[str] = StreamRedactor()
    try:
        async for chunk in source:
            yield (
                _with_text(chunk, redactor, _ANSWER) if isinstance(chunk, AIMessageChunk) else chunk
            )
        if rest := redactor.flush(_ANSWER):
            yield AIMessageChunk(content=rest)
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()


async def redacted_events(source: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """`source`'s stream events with every streamed text redacted: the root model's
    chunks (flushed before a tool starts and when the model ends, so a tail stays in
    its message) and the panel's deltas (flushed before that panelist's end)."""
    redactor: StreamRedactor[Any] = StreamRedactor()
    last: dict[Any, Any] = {}
    """The last event of each stream: what its flushed tail goes out as."""

    def flushed(streams: list[Any]) -> list[Any]:
        out = []
        for stream in streams:
            rest, event = redactor.flush(stream), last.pop(stream)
            if not rest:
                continue
            if stream == _ANSWER:
                out.append({**event, "data": {"chunk": AIMessageChunk(content=rest)}})
            else:
                out.append({**event, "data": {**event["data"], "delta": rest}})
        return out

    try:
        async for event in source:
            kind, root = event["event"], not event["parent_ids"]
            if kind == "on_chat_model_stream" and root:
                chunk = event["data"]["chunk"]
                if isinstance(chunk, AIMessageChunk):
                    last[_ANSWER] = event
                    event = {
                        **event,
                        "data": {**event["data"], "chunk": _with_text(chunk, redactor, _ANSWER)},
                    }
            elif (kind == "on_chat_model_end" and root) or kind == "on_tool_start":
                for out in flushed([s for s in redactor.holding() if s == _ANSWER]):
                    yield out
            elif kind == "on_custom_event":
                data, run = event["data"], event["run_id"]
                seat = (run, data.get("panel_index", data.get("model")))
                if event["name"] in _DELTAS and isinstance(data.get("delta"), str):
                    stream = (*seat, event["name"])
                    last[stream] = event
                    event = {
                        **event,
                        "data": {**data, "delta": redactor.feed(stream, data["delta"])},
                    }
                elif event["name"] in _PANEL_ENDS:
                    for out in flushed([s for s in redactor.holding() if s[:2] == seat]):
                        yield out
                elif event["name"] == contract_events.COMPLETED:
                    for out in flushed(_of_run(redactor, run)):
                        yield out
            if kind == "on_tool_end":  # the fusion item closes: its panel's tails first
                for out in flushed(_of_run(redactor, event["run_id"])):
                    yield out
            yield event
        for out in flushed(redactor.holding()):
            yield out
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()


def _of_run(redactor: StreamRedactor[Any], run: Any) -> list[Any]:
    return [s for s in redactor.holding() if isinstance(s, tuple) and s[0] == run]


class RelayRedactor:
    """The text of relayed `chat.completion.chunk`s redacted across chunks: each choice's
    `content`, `reasoning`, `refusal` and each tool call's `arguments` is a stream; what
    a stream holds back goes out in its choice's finishing chunk (or `rest()` at the end)."""

    _TEXT = ("content", "reasoning", "refusal")

    def __init__(self) -> None:
        self.redactor: StreamRedactor[tuple[Any, ...]] = StreamRedactor()
        self._template: dict[str, Any] | None = None

    def chunk(self, data: dict[str, Any]) -> dict[str, Any]:
        """`data` with its deltas redacted (and held-back tails added where a choice ends)."""
        choices = data.get("choices")
        if not isinstance(choices, list):
            return data
        self._template = data
        return {**data, "choices": [self._choice(c) for c in choices]}

    def _choice(self, choice: Any) -> Any:
        if not isinstance(choice, dict) or not isinstance(choice.get("delta"), dict):
            return choice
        index, delta = choice.get("index", 0), dict(choice["delta"])
        for name in self._TEXT:
            if isinstance(delta.get(name), str):
                delta[name] = self.redactor.feed((index, name), delta[name])
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            delta["tool_calls"] = [self._call(index, call) for call in calls]
        if choice.get("finish_reason") is not None:
            delta = self._flush_into(index, delta)
        return {**choice, "delta": delta}

    def _call(self, index: Any, call: Any) -> Any:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
            return call
        stream = (index, "tool", call.get("index", 0))
        arguments = self.redactor.feed(stream, function["arguments"])
        return {**call, "function": {**function, "arguments": arguments}}

    def _flush_into(self, index: Any, delta: dict[str, Any]) -> dict[str, Any]:
        for stream in [s for s in self.redactor.holding() if s[0] == index]:
            rest = self.redactor.flush(stream)
            if stream[1] == "tool":
                calls = list(delta.get("tool_calls") or [])
                calls.append({"index": stream[2], "function": {"arguments": rest}})
                delta["tool_calls"] = calls
            else:
                delta[stream[1]] = (delta.get(stream[1]) or "") + rest
        return delta

    def rest(self) -> dict[str, Any] | None:
        """A last chunk with whatever is still held (a stream that never finished)."""
        held = self.redactor.holding()
        if not held or self._template is None:
            return None
        choices: dict[Any, dict[str, Any]] = {}
        for index in dict.fromkeys(s[0] for s in held):
            choices[index] = self._flush_into(index, {})
        body = {k: v for k, v in self._template.items() if k != "usage"}
        return {
            **body,
            "choices": [
                {"index": i, "delta": d, "finish_reason": None} for i, d in choices.items()
            ],
        }
