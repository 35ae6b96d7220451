"""Playing an answer over HTTP: a `Plan` of timed chunks, sent by `Playback`.

An answer is decided in full before anything is sent (`Plan`), so latency, streaming
pace, hangs and faults are just pauses between chunks. `Playback` sends them, logs the
exchange as it goes, and stops quietly when the client leaves or the server stops.
"""

from __future__ import annotations

import asyncio
import http
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from langchain_fusion.testing.script import JsonDict, LogEntry, RequestLog

__all__ = [
    "SSE_HEADERS",
    "Plan",
    "Playback",
    "error_plan",
    "json_plan",
    "refusal_plan",
    "scripted_failure",
    "sse",
]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_ERROR_WORDS = {
    429: "rate limited",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


@dataclass
class Plan:
    """What to send and when: computed up front, then played by `Playback`."""

    status_code: int
    headers: list[tuple[bytes, bytes]]
    # (seconds to wait, bytes to send) in order; the first wait precedes the headers.
    events: list[tuple[float, bytes]]
    response_text: str | None = None
    hang: bool = False
    error: JsonDict | None = None  # the body's "error" object, for the request log


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]


def json_plan(status: int, payload: JsonDict, text: str | None = None) -> Plan:
    """Send ``payload`` as one JSON body."""
    data = json.dumps(payload).encode()
    return Plan(status, _json_headers(data), [(0.0, data)], response_text=text)


def _error_body_plan(status: int, error: JsonDict, retry_after: float | None = None) -> Plan:
    plan = json_plan(status, {"error": error})
    plan.error = error
    if retry_after is not None:
        plan.headers.append((b"retry-after", f"{retry_after:g}".encode()))
    return plan


def error_plan(
    status: int,
    message: str,
    error_type: str | None = None,
    param: str | None = None,
    retry_after: float | None = None,
) -> Plan:
    """An OpenAI-style error body whose ``code`` is the HTTP status (as OpenRouter sends)."""
    kind = error_type or _ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error")
    error = {"message": message, "type": kind, "param": param, "code": status}
    return _error_body_plan(status, error, retry_after)


def refusal_plan(message: str, param: str | None, code: str | None) -> Plan:
    """A 400 exactly as OpenAI words a refused request: its own ``param`` and ``code``."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return _error_body_plan(400, error)


def scripted_failure(
    model: str,
    status: int,
    retry_after: float | None,
    *,
    message: str | None = None,
    fields: Mapping[str, Any] | None = None,
) -> Plan:
    """The error a `ModelScript` fault sends (its own words and fields when scripted)."""
    words = _ERROR_WORDS.get(status) or http.HTTPStatus(status).phrase.lower()
    text = message if message is not None else f"scripted failure: {status} {words} for {model}"
    plan = error_plan(status, text, retry_after=retry_after)
    if fields:
        error = {**(plan.error or {}), **fields}
        plan = _error_body_plan(status, error, retry_after)
    return plan


def sse(data: JsonDict) -> bytes:
    """One server-sent event carrying ``data``."""
    return f"data: {json.dumps(data)}\n\n".encode()


class Playback(Response):
    """Sends a `Plan` with its pauses, and stops early on disconnect or server stop."""

    def __init__(
        self, log: RequestLog, stop_event: asyncio.Event | None, entry: LogEntry, plan: Plan
    ) -> None:
        """Play ``plan`` for ``entry`` of ``log``; ``stop_event`` is set when the server stops."""
        # No super().__init__(): that renders a body up front, and this one is timed.
        self.status_code = plan.status_code
        self.raw_headers = plan.headers
        self.background = None
        self._log = log
        self._stop_event = stop_event
        self._entry = entry
        self._plan = plan
        self._started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Play the plan; a vanished client or a stopping server ends it quietly."""
        disconnected = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_disconnect(receive, disconnected))
        try:
            if await self._play(send, disconnected):
                return
            if disconnected.is_set():
                return
            # The server is stopping: finish the exchange so uvicorn can close promptly.
            if not self._started:
                plan = error_plan(503, "scripted server is shutting down", "server_error")
                await send({"type": "http.response.start", "status": 503, "headers": plan.headers})
                await send({"type": "http.response.body", "body": plan.events[0][1]})
            else:
                await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()

    async def _play(self, send: Send, disconnected: asyncio.Event) -> bool:
        """Return True when everything was sent, False when interrupted."""
        plan, entry = self._plan, self._entry
        if plan.hang:
            await self._pause(None, disconnected)
            return False
        last = len(plan.events) - 1
        for index, (delay, chunk) in enumerate(plan.events):
            if not await self._pause(delay, disconnected):
                return False
            # Log before sending, so a client that has the bytes also sees the log entry.
            if index == 0:
                now = time.monotonic()
                self._log.mark(
                    entry, status_code=plan.status_code, first_byte_at=now, error=plan.error
                )
                await send(
                    {
                        "type": "http.response.start",
                        "status": plan.status_code,
                        "headers": plan.headers,
                    }
                )
                self._started = True
            if index == last:
                text = plan.response_text
                self._log.mark(entry, completed_at=time.monotonic(), response_text=text)
            await send({"type": "http.response.body", "body": chunk, "more_body": index != last})
        return True

    async def _pause(self, seconds: float | None, disconnected: asyncio.Event) -> bool:
        """Sleep ``seconds`` (None: forever); False if the client left or the server stops."""
        stop_event = self._stop_event
        events = [disconnected] if stop_event is None else [disconnected, stop_event]
        if any(event.is_set() for event in events):
            return False
        if seconds is not None and seconds <= 0:
            return True
        waiters = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        return not done


async def _watch_disconnect(receive: Receive, disconnected: asyncio.Event) -> None:
    # The body was read already, so the next message is the disconnect (if any).
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            disconnected.set()
            return
