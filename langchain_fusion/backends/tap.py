"""Reads what OpenRouter adds to a chat completion off the HTTP response, as the OpenAI SDK
reads it: the cost (`usage.cost`), the pages its web tools read (`annotations` of type
`url_citation`) and the concrete model that answers (`model`, in every chunk).

`langchain-openai` drops the first two and names the model only on a stream's last chunk;
its converters are private, so instead the backend's HTTP clients carry a `TappingTransport`
(httpx's public transport API) that copies each body or SSE `data:` line into the
`ResponseTap` of the call that sent it. A call opens its tap with `tapping(tap)` around the
moment its request goes out (a context variable, so concurrent calls on one shared
connection pool never mix); the bytes then reach the tap before the SDK parses them.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import openai

_OPEN_TAP: contextvars.ContextVar[ResponseTap | None] = contextvars.ContextVar(
    "langchain_fusion_response_tap", default=None
)


@dataclass
class ResponseTap:
    """What one call's response said beyond what `langchain-openai` keeps.

    A retried attempt starts afresh (`begin`); the last attempt's response is the call's.
    """

    model: str | None = None
    cost: float | None = None
    annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    """URL citations per choice index, in the order they came."""
    streamed: bool = False
    _pending: bytes = b""

    def begin(self, content_type: str) -> None:
        self.model, self.cost, self.annotations, self._pending = None, None, {}, b""
        self.streamed = content_type.split(";")[0].strip() == "text/event-stream"

    def feed(self, data: bytes) -> None:
        self._pending += data
        if not self.streamed:
            return  # a JSON body is read whole at the end
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._line(line.rstrip(b"\r"))

    def end(self) -> None:
        rest, self._pending = self._pending, b""
        if self.streamed:
            self._line(rest)
        elif isinstance(body := _json(rest), dict):
            self._observe(body, "message")

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        # Most events are a token's delta: parse only those that can tell us something.
        telling = self.model is None or b'"cost"' in line or b'"annotations"' in line
        if telling and isinstance(event := _json(line[5:]), dict):
            self._observe(event, "delta")

    def _observe(self, data: dict[str, Any], part: str) -> None:
        if self.model is None and isinstance(model := data.get("model"), str) and model:
            self.model = model
        usage = data.get("usage")
        if isinstance(usage, dict) and isinstance(cost := usage.get("cost"), int | float):
            self.cost = float(cost)
        for position, choice in enumerate(data.get("choices") or []):
            if not isinstance(choice, dict):
                continue
            found = (choice.get(part) or {}).get("annotations")
            if isinstance(found, list) and found:
                index = choice.get("index")
                key = index if isinstance(index, int) else position
                self.annotations.setdefault(key, []).extend(found)


def _json(data: bytes) -> Any:
    text = data.strip()
    if not text or text == b"[DONE]":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None  # not ours to judge: the SDK reports a malformed body itself


@contextmanager
def tapping(tap: ResponseTap) -> Iterator[ResponseTap]:
    """Requests sent inside this block copy their response into `tap`."""
    token = _OPEN_TAP.set(tap)
    try:
        yield tap
    finally:
        _OPEN_TAP.reset(token)


def _tapped(request: httpx.Request) -> ResponseTap | None:
    tap = _OPEN_TAP.get()
    if tap is not None:
        # The transport sees the body as sent: ask for it uncompressed so that the tap
        # reads what the SDK reads (a chat completion is small).
        request.headers["accept-encoding"] = "identity"
    return tap


def _tap_response(response: httpx.Response, tap: ResponseTap, tee: Any) -> None:
    tap.begin(response.headers.get("content-type", ""))
    if response.is_stream_consumed:  # a body given whole (a mock, a cache): read it now
        tap.feed(response.content)
        tap.end()
    else:
        response.stream = tee(response.stream, tap)


class TappingTransport(httpx.BaseTransport):
    """An httpx transport that copies tapped calls' responses into their `ResponseTap`."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self._inner = inner or httpx.HTTPTransport(limits=openai.DEFAULT_CONNECTION_LIMITS)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        tap = _tapped(request)
        response = self._inner.handle_request(request)
        if tap is not None:
            _tap_response(response, tap, _Tee)
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncTappingTransport(httpx.AsyncBaseTransport):
    """`TappingTransport` for the async client."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport(limits=openai.DEFAULT_CONNECTION_LIMITS)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        tap = _tapped(request)
        response = await self._inner.handle_async_request(request)
        if tap is not None:
            _tap_response(response, tap, _AsyncTee)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Tee(httpx.SyncByteStream):
    def __init__(self, stream: Any, tap: ResponseTap) -> None:
        self._stream, self._tap = stream, tap

    def __iter__(self) -> Iterator[bytes]:
        for part in self._stream:
            self._tap.feed(part)
            yield part
        self._tap.end()

    def close(self) -> None:
        self._stream.close()


class _AsyncTee(httpx.AsyncByteStream):
    def __init__(self, stream: Any, tap: ResponseTap) -> None:
        self._stream, self._tap = stream, tap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            self._tap.feed(part)
            yield part
        self._tap.end()

    async def aclose(self) -> None:
        await self._stream.aclose()


def tapped_http_client() -> httpx.Client:
    """The OpenAI SDK's default sync client (its timeouts, redirects, pool limits) on a
    `TappingTransport`."""
    return openai.DefaultHttpxClient(transport=TappingTransport())


def tapped_async_http_client() -> httpx.AsyncClient:
    """`tapped_http_client` for async calls."""
    return openai.DefaultAsyncHttpxClient(transport=AsyncTappingTransport())
