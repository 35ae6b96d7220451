"""`HostileOpenAIServer`: a scripted upstream that does what real providers do and a
forgiving fake does not.

- Its error texts quote the `Authorization` header it received (some providers echo the
  key they were sent: "Incorrect API key provided: ..."), so a gateway that forwards
  upstream errors unredacted leaks its key.
- It reports usage as a real tokenizer could: one token per UTF-8 byte of everything the
  request carries (every message as sent, every part, tool-call arguments, tool
  definitions, the response format), which no byte-level BPE tokenizer exceeds; a CJK
  character is three tokens, not a quarter.
- It bills `n`: the completion is written `n` times, and charged so.
- With `chunk_chars=k` it streams text in deltas of at most k characters, as a tokenizer
  splits a long word: a key its answer quotes spans several chunks.

Use it as `ScriptedOpenAIServer` (same scripts, same request log); tests of caps and of
redaction run against it, so that a gateway's estimate is checked against a pessimistic
provider rather than the scripted server's word count.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from langchain_fusion.testing.playback import Plan, sse
from langchain_fusion.testing.script import JsonDict, LogEntry
from langchain_fusion.testing.server import ScriptedOpenAIServer

__all__ = ["HostileOpenAIServer", "byte_tokens"]

_BILLED_PARTS = ("messages", "tools", "response_format", "functions")


def byte_tokens(body: JsonDict) -> int:
    """The prompt tokens of `body`: the UTF-8 bytes of what it asks the model to read."""
    return sum(
        len(json.dumps(body[part], ensure_ascii=False).encode())
        for part in _BILLED_PARTS
        if body.get(part)
    )


def _choices(body: JsonDict) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def _output_limit(body: JsonDict) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


class HostileOpenAIServer(ScriptedOpenAIServer):
    """A `ScriptedOpenAIServer` whose errors echo the key it was sent and whose usage
    counts bytes and `n` (see the module's docstring). `billed_tokens` is what it has
    charged so far, as a provider's invoice would say."""

    def __init__(self, *args: Any, chunk_chars: int | None = None, **kwargs: Any) -> None:
        if chunk_chars is not None and chunk_chars < 1:
            raise ValueError("chunk_chars must be >= 1 (or None for whole tokens)")
        super().__init__(*args, **kwargs)
        self._billed: list[int] = []
        self.chunk_chars = chunk_chars

    @property
    def billed_tokens(self) -> int:
        """Tokens billed for every answer sent so far (prompt and completion)."""
        with self._lock:
            return sum(self._billed)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._billed.clear()

    def _playback(self, entry: LogEntry, plan: Plan) -> Response:
        if plan.status_code >= 400:
            self._echo_key(entry, plan)
        elif plan.status_code == 200 and not plan.hang and entry.path.endswith("/completions"):
            billed = self._bill(entry, plan)  # a completion (the model list is free)
            with self._lock:
                self._billed.append(billed)
            if self.chunk_chars is not None:
                plan.events = _split_deltas(plan.events, self.chunk_chars)
        return super()._playback(entry, plan)

    @staticmethod
    def _echo_key(entry: LogEntry, plan: Plan) -> None:
        sent = entry.headers.get("authorization", "(none)")
        for index, (delay, data) in enumerate(plan.events):
            try:
                payload = json.loads(data)
            except ValueError:
                continue
            error = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict):
                error["message"] = f"{error.get('message', '')} (Authorization: {sent})"
                raw = json.dumps(payload).encode()
                plan.events[index] = (delay, raw)
                plan.headers = [
                    (name, str(len(raw)).encode() if name == b"content-length" else value)
                    for name, value in plan.headers
                ]
                plan.error = error

    @staticmethod
    def _bill(entry: LogEntry, plan: Plan) -> int:
        body = entry.body
        prompt = byte_tokens(body)
        # Tool-call answers have no text: the bytes sent bound what was written.
        text = plan.response_text
        written = len(text.encode()) if text is not None else sum(len(d) for _, d in plan.events)
        limit = _output_limit(body)
        per_choice = max(written, 1) if limit is None else min(max(written, 1), limit)
        completion = per_choice * _choices(body)

        def billed(usage: dict[str, Any]) -> dict[str, Any]:
            cost_per_token = None
            if isinstance(usage.get("cost"), int | float) and usage.get("total_tokens"):
                cost_per_token = usage["cost"] / usage["total_tokens"]
            usage = {
                **usage,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            if cost_per_token is not None:
                usage["cost"] = (prompt + completion) * cost_per_token
            return usage

        for index, (delay, data) in enumerate(plan.events):
            if b'"usage"' not in data:
                continue
            if data.startswith(b"data: "):
                try:
                    payload = json.loads(data[len(b"data: ") :])
                except ValueError:
                    continue
                if isinstance(payload.get("usage"), dict):
                    payload["usage"] = billed(payload["usage"])
                    plan.events[index] = (delay, sse(payload))
                continue
            try:
                payload = json.loads(data)
            except ValueError:
                continue
            if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
                payload["usage"] = billed(payload["usage"])
                raw = json.dumps(payload).encode()
                plan.events[index] = (delay, raw)
                plan.headers = [
                    (name, str(len(raw)).encode() if name == b"content-length" else value)
                    for name, value in plan.headers
                ]
        return prompt + completion


def _split_deltas(events: list[tuple[float, bytes]], size: int) -> list[tuple[float, bytes]]:
    """Each streamed chunk whose text delta is over `size` characters as several chunks."""
    out: list[tuple[float, bytes]] = []
    for delay, data in events:
        try:
            payload = json.loads(data[len(b"data: ") :]) if data.startswith(b"data: {") else None
        except ValueError:
            payload = None
        choices = payload.get("choices") if isinstance(payload, dict) else None
        delta = choices[0].get("delta") if choices and isinstance(choices[0], dict) else None
        text = delta.get("content") if isinstance(delta, dict) else None
        if not isinstance(text, str) or len(text) <= size:
            out.append((delay, data))
            continue
        assert isinstance(payload, dict)
        assert isinstance(choices, list)
        assert isinstance(delta, dict)
        for start in range(0, len(text), size):
            piece = {**choices[0], "delta": {**delta, "content": text[start : start + size]}}
            out.append((delay if start == 0 else 0.0, sse({**payload, "choices": [piece]})))
    return out
