"""A scripted, deterministic OpenAI-compatible HTTP server for offline tests.

`ScriptedOpenAIServer` runs Starlette under uvicorn in a background thread on
``127.0.0.1`` and a free port. Each model name answers according to a `ModelScript`:
fixed or generated text, JSON that fits the request's schema, tool calls, latency,
and faults (HTTP errors, hangs, malformed bodies). Every request is recorded with
timestamps so tests can check what was sent and whether calls overlapped in time.

Example::

    with ScriptedOpenAIServer({"judge": ModelScript(json_reply={"winner": 1})}) as server:
        llm = ChatOpenAI(base_url=server.base_url, api_key="test", model="panel-a")
        llm.invoke("What is X?")
        assert server.requests_for("panel-a")[0].stream is False
"""

from __future__ import annotations

import asyncio
import hashlib
import http
import json
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from langchain_fusion._background_server import BackgroundServer

__all__ = ["ModelScript", "RecordedRequest", "ScriptedOpenAIServer"]

JsonDict = dict[str, Any]
ReplyFn = Callable[[JsonDict], str]
JsonReplyFn = Callable[[JsonDict], JsonDict | str]

# Word-ish tokens; the `\s+` branch only matches all-whitespace text, so that
# "".join(tokens) always gives back the text exactly.
_TOKEN_RE = re.compile(r"\s*\S+\s*|\s+")
_SYSTEM_FINGERPRINT = "fp_scripted"


@dataclass(frozen=True)
class ModelScript:
    """How one model answers. Every field is optional; the default is a healthy model.

    Content:
        reply: The assistant text, or a callable given the request body. ``None``
            gives a deterministic ~40-word answer built from the model name and the
            last user message (and the last tool result, when one follows it).
        json_reply: The answer when the request asks for ``json_schema`` or
            ``json_object``. A dict is serialised; a str is sent verbatim (prose or
            broken JSON for judge tests); a callable gets the request body. ``None``
            generates an object that validates against the request's schema.
        response_model: The ``model`` field of responses; ``None`` echoes the request.
        tool_calls: ``{"name": str, "arguments": dict | str}`` items, answered when
            the request carries ``tools`` (and ``tool_choice`` is not ``"none"``).
            Or ``"auto"``: act like a real tool-calling model (see "Automatic tool
            calls" below).
        tool_policy: ``"first_turn"`` calls tools only while no ``tool`` message
            follows the last user message, then answers with text; ``"always"``
            calls them on every request that has tools.

    Automatic tool calls (``tool_calls="auto"``), deterministic:
        When: never without ``tools`` or with ``tool_choice: "none"``; always when
            ``tool_choice`` is ``"required"`` or names a function (whatever
            ``tool_policy`` says); otherwise (``"auto"`` or absent) as ``tool_policy``
            says.
        Which: one call, to the tool ``tool_choice`` names; else to the tool the last
            user message mentions most (its whole name, as a word, beats words of its
            name: ``get_weather`` is mentioned by "weather"; words under 3 letters do
            not count), the first such tool on a tie; else to the first tool.
        Arguments: an object generated from the tool's ``parameters`` schema (as for
            ``json_schema`` answers), whose top-level parameters are then filled from
            the last user message: ``integer`` and ``number`` parameters take the
            numbers that stand alone in it ("-2", "2.5"; not "v1.2" or "x-9"), in
            order; ``string`` parameters (without ``format`` or ``pattern``) take the
            phrases it quotes (``'...'``, ``"..."``), in order, or, when it quotes
            none, the first string parameter takes the whole message. A value outside
            a string's ``minLength``/``maxLength`` is not used. "What is the value of
            magic_function(3)?" gives ``magic_function`` with ``{"input": 3}``.
        empty: Answer 200 with empty content and zero completion tokens.

    Latency:
        time_to_first_token: Seconds before the response headers, for every answer
            (errors included, hangs excepted).
        tokens_per_second: ``None`` sends everything at once; otherwise streams sleep
            ``1 / tokens_per_second`` before each token, and non-streaming answers
            wait ``tokens / tokens_per_second`` before replying.

    Faults:
        status_code: Fail with this HTTP status and an OpenAI-style error body. With
            ``error_rate == 0`` every request fails unless ``fail_first`` limits it.
        retry_after: Seconds sent as a ``Retry-After`` header with errors.
        fail_first: Only the first N requests of the model fail (with
            ``status_code`` or 500); later ones succeed.
        error_rate: Probability that a request fails with ``status_code or 500``,
            drawn from ``random.Random(seed)`` per model, so the order is repeatable.
        seed: Seed for ``error_rate``.
        hang: Accept the request and never answer, until the client disconnects or
            the server stops.
        malformed_body: Answer 200 with a body (or an SSE ``data:`` line) that is
            not valid JSON.

    Usage:
        annotations: URL citations sent with the answer (``message.annotations`` and the
            last delta of a stream), as OpenRouter reports the pages its server-side web
            tools read: ``{"url": ..., "title": ...}`` items.
        cost_per_token: When set, ``usage.cost = total_tokens * cost_per_token``, as
            OpenRouter reports cost.

    Every script honours the request's ``stop`` (a string or a list): the content is
    cut before the first occurrence of any stop sequence, as OpenAI does, and usage
    counts what was sent.
    """

    reply: str | ReplyFn | None = None
    json_reply: JsonDict | str | JsonReplyFn | None = None
    response_model: str | None = None
    tool_calls: Sequence[Mapping[str, Any]] | Literal["auto"] | None = None
    tool_policy: Literal["first_turn", "always"] = "first_turn"
    time_to_first_token: float = 0.0
    tokens_per_second: float | None = None
    status_code: int | None = None
    retry_after: float | None = None
    fail_first: int | None = None
    error_rate: float = 0.0
    seed: int = 0
    hang: bool = False
    malformed_body: bool = False
    empty: bool = False
    cost_per_token: float | None = None
    annotations: Sequence[Mapping[str, str]] | None = None

    def __post_init__(self) -> None:
        """Reject settings that could only produce confusing test failures later."""
        if self.tool_policy not in ("first_turn", "always"):
            policy = self.tool_policy
            raise ValueError(f"tool_policy must be 'first_turn' or 'always', not {policy!r}")
        if self.time_to_first_token < 0:
            raise ValueError("time_to_first_token must be >= 0")
        if self.tokens_per_second is not None and self.tokens_per_second <= 0:
            raise ValueError("tokens_per_second must be > 0 (or None for no pacing)")
        if self.status_code is not None and not 400 <= self.status_code <= 599:
            raise ValueError(f"status_code must be an HTTP error (400-599), not {self.status_code}")
        if self.fail_first is not None and self.fail_first < 0:
            raise ValueError("fail_first must be >= 0")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if isinstance(self.tool_calls, str):
            if self.tool_calls != "auto":
                raise ValueError(f"tool_calls must be a list or 'auto', not {self.tool_calls!r}")
            return
        for call in self.tool_calls or ():
            if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
                raise ValueError(f"each tool call needs a str 'name': {call!r}")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; times are `time.monotonic()` in this process.

    ``status_code`` is what was sent, 0 while nothing has been (a hang, or a client that
    left first). ``first_byte_at`` is when the response headers went out and
    ``completed_at`` when the last byte did; both stay ``None`` for a hang.
    ``response_text`` is the full assistant content sent (text or JSON), else ``None``.
    """

    path: str
    model: str
    headers: dict[str, str]
    body: JsonDict
    stream: bool
    status_code: int
    received_at: float
    first_byte_at: float | None
    completed_at: float | None
    response_text: str | None


@dataclass
class _Entry:
    """The mutable log entry behind a `RecordedRequest`, filled in as the answer goes out."""

    path: str
    model: str
    headers: dict[str, str]
    body: JsonDict
    stream: bool
    received_at: float
    status_code: int = 0
    first_byte_at: float | None = None
    completed_at: float | None = None
    response_text: str | None = None

    def freeze(self) -> RecordedRequest:
        """Return an immutable snapshot."""
        return RecordedRequest(
            path=self.path,
            model=self.model,
            headers=dict(self.headers),
            body=self.body,
            stream=self.stream,
            status_code=self.status_code,
            received_at=self.received_at,
            first_byte_at=self.first_byte_at,
            completed_at=self.completed_at,
            response_text=self.response_text,
        )


@dataclass
class _Plan:
    """What to send and when: computed up front, then played by `_Playback`."""

    status_code: int
    headers: list[tuple[bytes, bytes]]
    # (seconds to wait, bytes to send) in order; the first wait precedes the headers.
    events: list[tuple[float, bytes]]
    response_text: str | None = None
    hang: bool = False


@dataclass
class _ModelState:
    """Per-model counters that make fail_first and error_rate deterministic."""

    count: int = 0
    rng: random.Random = field(default_factory=random.Random)


class ScriptedOpenAIServer(BackgroundServer):
    """An OpenAI-compatible server whose models follow `ModelScript`s.

    Use as a context manager (or `start` / `stop`). It serves ``POST
    /v1/chat/completions`` (plain and SSE streaming) and ``GET /v1/models``, and logs
    every request. Models without a script follow ``default`` (or ``ModelScript()``).
    Safe to use from sync and async tests: the server has its own thread and loop.
    """

    def __init__(
        self,
        scripts: Mapping[str, ModelScript] | None = None,
        default: ModelScript | None = None,
    ) -> None:
        """Create a stopped server with ``scripts`` per model name and a ``default``."""
        self._lock = threading.Lock()
        self._scripts: dict[str, ModelScript] = dict(scripts or {})
        self._default = default if default is not None else ModelScript()
        self._log: list[_Entry] = []
        self._models: dict[str, _ModelState] = {}
        self._sequence = 0
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/models", self._list_models, methods=["GET"]),
                Route(
                    "/{path:path}",
                    self._unknown_endpoint,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                ),
            ]
        )
        super().__init__(app, name="scripted-openai")
        self._stop_event: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------

    def _on_serving(self) -> None:
        """A fresh stop event on the server's loop, for `_Playback` to wait on."""
        self._stop_event = asyncio.Event()

    def _on_stopping(self) -> None:
        """Wake hanging and sleeping handlers, or uvicorn would wait for them to finish."""
        if self._stop_event is not None:
            self._stop_event.set()

    # -- public state ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, for ``base_url=`` of OpenAI clients."""
        return self.url("/v1")

    def set_script(self, model: str, script: ModelScript) -> None:
        """Replace (or add) a model's script; its fail_first/error_rate counters restart."""
        with self._lock:
            self._scripts[model] = script
            self._models.pop(model, None)

    def script_for(self, model: str) -> ModelScript:
        """The script that answers ``model`` (its own, else the default)."""
        with self._lock:
            return self._scripts.get(model, self._default)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request so far, in arrival order."""
        with self._lock:
            return [entry.freeze() for entry in self._log]

    def requests_for(self, model: str) -> list[RecordedRequest]:
        """The logged requests whose body asked for ``model``."""
        return [request for request in self.requests if request.model == model]

    def reset(self) -> None:
        """Clear the request log and the per-model counters (fail_first, error_rate)."""
        with self._lock:
            self._log.clear()
            self._models.clear()
            self._sequence = 0

    # -- endpoints -------------------------------------------------------------------

    async def _chat_completions(self, request: Request) -> Response:
        received_at = time.monotonic()
        headers = _lower(request)
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            entry = self._record(request, "", headers, {}, False, received_at)
            message = f"request body is not valid JSON: {error}"
            return self._playback(entry, _error_plan(400, message))
        if not isinstance(body, dict):
            entry = self._record(request, "", headers, {}, False, received_at)
            message = "request body must be a JSON object"
            return self._playback(entry, _error_plan(400, message))
        model = body.get("model")
        stream = body.get("stream") is True
        entry = self._record(
            request, model if isinstance(model, str) else "", headers, body, stream, received_at
        )
        if not isinstance(model, str) or not model:
            message = "'model' is required and must be a non-empty string"
            return self._playback(entry, _error_plan(400, message, param="model"))
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            message = "'messages' is required and must be a non-empty list of messages"
            return self._playback(entry, _error_plan(400, message, param="messages"))
        if not all(isinstance(message, dict) for message in messages):
            message = "each item of 'messages' must be an object"
            return self._playback(entry, _error_plan(400, message, param="messages"))

        script, attempt, unlucky, sequence = self._admit(model)
        try:
            plan = _plan_completion(model, body, script, attempt, unlucky, sequence)
        except Exception as error:  # a test's reply callable failed: report it, not crash
            plan = _error_plan(500, f"scripted reply for {model} raised {error!r}", "server_error")
        delay, first = plan.events[0]
        plan.events[0] = (delay + script.time_to_first_token, first)
        return self._playback(entry, plan)

    async def _list_models(self, request: Request) -> Response:
        entry = self._record(request, "", _lower(request), {}, False, time.monotonic())
        with self._lock:
            names = list(self._scripts)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "scripted"} for name in names
        ]
        return self._playback(entry, _json_plan(200, {"object": "list", "data": data}))

    async def _unknown_endpoint(self, request: Request) -> Response:
        entry = self._record(request, "", _lower(request), {}, False, time.monotonic())
        message = f"no scripted endpoint for {request.method} {request.url.path}"
        return self._playback(entry, _error_plan(404, message, "not_found_error"))

    # -- helpers ---------------------------------------------------------------------

    def _record(
        self,
        request: Request,
        model: str,
        headers: dict[str, str],
        body: JsonDict,
        stream: bool,
        received_at: float,
    ) -> _Entry:
        entry = _Entry(request.url.path, model, headers, body, stream, received_at)
        with self._lock:
            self._log.append(entry)
        return entry

    def _admit(self, model: str) -> tuple[ModelScript, int, bool, int]:
        """Pick the script and draw this request's counters, in arrival order."""
        with self._lock:
            script = self._scripts.get(model, self._default)
            state = self._models.get(model)
            if state is None:
                state = self._models[model] = _ModelState(rng=random.Random(script.seed))
            state.count += 1
            # Draw only when the rate is in use, so the sequence is the seed's own.
            unlucky = script.error_rate > 0 and state.rng.random() < script.error_rate
            self._sequence += 1
            return script, state.count, unlucky, self._sequence

    def _playback(self, entry: _Entry, plan: _Plan) -> Response:
        return _Playback(self, entry, plan)

    def _mark(self, entry: _Entry, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(entry, name, value)


def _lower(request: Request) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


class _Playback(Response):
    """Sends a `_Plan` with its pauses, and stops early on disconnect or server stop."""

    def __init__(self, owner: ScriptedOpenAIServer, entry: _Entry, plan: _Plan) -> None:
        # No super().__init__(): that renders a body up front, and this one is timed.
        self.status_code = plan.status_code
        self.raw_headers = plan.headers
        self.background = None
        self._owner = owner
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
                plan = _error_plan(503, "scripted server is shutting down", "server_error")
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
                self._owner._mark(entry, status_code=plan.status_code, first_byte_at=now)
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
                self._owner._mark(entry, completed_at=time.monotonic(), response_text=text)
            await send({"type": "http.response.body", "body": chunk, "more_body": index != last})
        return True

    async def _pause(self, seconds: float | None, disconnected: asyncio.Event) -> bool:
        """Sleep ``seconds`` (None: forever); False if the client left or the server stops."""
        stop_event = self._owner._stop_event
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


# -- plans -------------------------------------------------------------------------------

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


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]


def _json_plan(status: int, payload: JsonDict, text: str | None = None) -> _Plan:
    data = json.dumps(payload).encode()
    return _Plan(status, _json_headers(data), [(0.0, data)], response_text=text)


def _error_plan(
    status: int,
    message: str,
    error_type: str | None = None,
    param: str | None = None,
    retry_after: float | None = None,
) -> _Plan:
    kind = error_type or _ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error")
    payload = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    plan = _json_plan(status, payload)
    if retry_after is not None:
        plan.headers.append((b"retry-after", f"{retry_after:g}".encode()))
    return plan


def _scripted_failure(model: str, status: int, retry_after: float | None) -> _Plan:
    words = _ERROR_WORDS.get(status) or http.HTTPStatus(status).phrase.lower()
    message = f"scripted failure: {status} {words} for {model}"
    return _error_plan(status, message, retry_after=retry_after)


def _should_fail(script: ModelScript, attempt: int, unlucky: bool) -> bool:
    if script.fail_first is not None and attempt <= script.fail_first:
        return True
    if script.error_rate > 0:
        return unlucky
    return script.status_code is not None and script.fail_first is None


def _plan_completion(
    model: str,
    body: JsonDict,
    script: ModelScript,
    attempt: int,
    unlucky: bool,
    sequence: int,
) -> _Plan:
    """Decide the whole answer to one chat completion request."""
    stream = body.get("stream") is True
    if script.hang:
        return _Plan(0, [], [(0.0, b"")], hang=True)
    if _should_fail(script, attempt, unlucky):
        return _scripted_failure(model, script.status_code or 500, script.retry_after)

    completion_id = f"chatcmpl-scripted-{sequence}"
    response_model = script.response_model or model
    created = int(time.time())
    if script.malformed_body:
        return _malformed_plan(completion_id, response_model, created, stream)

    text: str | None
    calls: list[JsonDict] = []
    if script.empty:
        text = ""
    elif _wants_tool_calls(body, script):
        text = None
        scripted = script.tool_calls
        if scripted == "auto":
            scripted = [_auto_tool_call(model, body)]
        calls = _tool_calls(body, scripted or ())
    elif _json_format(body) is not None:
        text = _json_text(model, body, script)
    elif script.reply is None:
        text = _default_reply(model, body)
    elif isinstance(script.reply, str):
        text = script.reply
    else:
        text = str(script.reply(body))
    if text:
        text = _apply_stop(text, body.get("stop"))

    pieces = _tokens(text) if text is not None else []
    call_pieces = [_tokens(call["function"]["arguments"]) for call in calls]
    completion_tokens = len(pieces) + sum(len(p) for p in call_pieces)
    usage = _usage(_prompt_tokens(body), completion_tokens, script.cost_per_token)
    finish_reason = "tool_calls" if calls else "stop"
    tps = script.tokens_per_second
    step = 0.0 if tps is None else 1.0 / tps

    if not stream:
        message: JsonDict = {"role": "assistant", "content": text, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        if script.annotations:
            message["annotations"] = _url_citations(script.annotations)
        payload = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": response_model,
            "system_fingerprint": _SYSTEM_FINGERPRINT,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": usage,
        }
        plan = _json_plan(200, payload, text)
        # Same total time as the stream would take, paid before the headers.
        plan.events[0] = (step * completion_tokens, plan.events[0][1])
        return plan

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: JsonDict, finish: str | None = None) -> bytes:
        data: JsonDict = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": response_model,
            "system_fingerprint": _SYSTEM_FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            data["usage"] = None
        return _sse(data)

    first: JsonDict = {"role": "assistant", "content": "" if text is not None else None}
    events: list[tuple[float, bytes]] = [(0.0, chunk(first))]
    events += [(step, chunk({"content": piece})) for piece in pieces]
    for index, (call, arg_pieces) in enumerate(zip(calls, call_pieces, strict=True)):
        head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        events.append((0.0, chunk({"tool_calls": [head]})))
        events += [
            (step, chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
            for piece in arg_pieces
        ]
    last_delta: JsonDict = {}
    if script.annotations:
        last_delta["annotations"] = _url_citations(script.annotations)
    events.append((0.0, chunk(last_delta, finish_reason)))
    if include_usage:
        final = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": response_model,
            "system_fingerprint": _SYSTEM_FINGERPRINT,
            "choices": [],
            "usage": usage,
        }
        events.append((0.0, _sse(final)))
    events.append((0.0, b"data: [DONE]\n\n"))
    return _Plan(200, _SSE_HEADERS, events, response_text=text)


_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


def _url_citations(annotations: Sequence[Mapping[str, str]]) -> list[JsonDict]:
    """OpenRouter's shape for the pages a web tool read."""
    return [
        {"type": "url_citation", "url_citation": {"url": a["url"], "title": a.get("title", "")}}
        for a in annotations
    ]


def _sse(data: JsonDict) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def _malformed_plan(completion_id: str, model: str, created: int, stream: bool) -> _Plan:
    # Cut off mid-object: valid-looking start, never parseable.
    broken = (
        f'{{"id": "{completion_id}", "object": "chat.completion", "created": {created}, '
        f'"model": "{model}", "choices": [{{"index": 0, "message": {{"content": "tru'
    ).encode()
    if not stream:
        return _Plan(200, _json_headers(broken), [(0.0, broken)])
    events = [(0.0, b"data: " + broken + b"\n\n"), (0.0, b"data: [DONE]\n\n")]
    return _Plan(200, _SSE_HEADERS, events)


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def _content_text(content: Any) -> str:
    """Text of a message ``content``: a string, or a list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        ]
        return " ".join(parts)
    return ""


def _prompt_tokens(body: JsonDict) -> int:
    messages = body.get("messages") or []
    return sum(len(_content_text(message.get("content")).split()) for message in messages)


def _usage(prompt: int, completion: int, cost_per_token: float | None) -> JsonDict:
    usage: JsonDict = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cost_per_token is not None:
        usage["cost"] = (prompt + completion) * cost_per_token
    return usage


def _last_user_index(messages: list[JsonDict]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    return -1


def _tool_results_after_user(messages: list[JsonDict]) -> list[JsonDict]:
    start = _last_user_index(messages) + 1
    return [message for message in messages[start:] if message.get("role") == "tool"]


def _wants_tool_calls(body: JsonDict, script: ModelScript) -> bool:
    choice = body.get("tool_choice")
    tools = _function_tools(body) if script.tool_calls == "auto" else body.get("tools")
    if not script.tool_calls or not tools or choice == "none":
        return False
    if script.tool_calls == "auto" and (choice == "required" or isinstance(choice, dict)):
        return True  # a real model must call a tool here, whatever happened before
    if script.tool_policy == "always":
        return True
    return not _tool_results_after_user(body.get("messages") or [])


def _apply_stop(text: str, stop: Any) -> str:
    """``text`` cut before the first occurrence of any stop sequence."""
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    cut = len(text)
    for sequence in sequences:
        if isinstance(sequence, str) and sequence:
            found = text.find(sequence)
            if 0 <= found < cut:
                cut = found
    return text[:cut]


# -- automatic tool calls ----------------------------------------------------------------

# Quoted phrases: the quote must not sit inside a word, so "what's" opens nothing.
_QUOTED_RE = re.compile(r"""(?<!\w)(?:'([^'\n]+)'|"([^"\n]+)"|“([^”\n]+)”|‘([^’\n]+)’)(?!\w)""")
# Standalone numbers: not part of a word, a version ("v1.2") or a name ("x-9").
_NUMBER_RE = re.compile(r"(?<![\w.+-])[-+]?\d+(?:\.\d+)?(?!\w|\.\w)")
_CAMEL_RE = re.compile(r"([a-z0-9])([A-Z])")


def _function_tools(body: JsonDict) -> list[JsonDict]:
    """The request's function tools (``{"name", "description", "parameters"}`` each)."""
    tools = body.get("tools")
    functions = []
    for item in tools if isinstance(tools, list) else []:
        function = item.get("function") if isinstance(item, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            functions.append(function)
    return functions


def _last_user_text(body: JsonDict) -> str:
    messages: list[JsonDict] = body.get("messages") or []
    index = _last_user_index(messages)
    return _content_text(messages[index].get("content")) if index >= 0 else ""


def _name_words(name: str) -> set[str]:
    spaced = _CAMEL_RE.sub(r"\1 \2", name)
    return {word.lower() for word in re.split(r"[\W_]+", spaced) if len(word) >= 3}


def _mentions(name: str, text: str) -> tuple[bool, int]:
    """How much ``text`` mentions a tool: its whole name as a word, then words of it."""
    lowered = text.lower()
    whole = re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", lowered) is not None
    words = set(re.findall(r"[^\W_]+", lowered))
    return whole, len(_name_words(name) & words)


def _chosen_tool(body: JsonDict) -> JsonDict:
    tools = _function_tools(body)
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        named = function.get("name") if isinstance(function, dict) else choice.get("name")
        for tool in tools:
            if tool["name"] == named:
                return tool
    text = _last_user_text(body)
    scores = [_mentions(tool["name"], text) for tool in tools]
    best = max(scores)
    return tools[scores.index(best)] if best > (False, 0) else tools[0]


def _auto_tool_call(model: str, body: JsonDict) -> JsonDict:
    """The one call a tool-calling model would make here (see `ModelScript`)."""
    tool = _chosen_tool(body)
    schema = tool.get("parameters")
    if not isinstance(schema, dict):
        schema = {"type": "object", "properties": {}}
    arguments = _SchemaExample(model, schema).value(schema, tool["name"])
    if not isinstance(arguments, dict):
        arguments = {}
    _fill_from_message(arguments, schema, _last_user_text(body))
    return {"name": tool["name"], "arguments": arguments}


def _simple_kind(schema: Any) -> str | None:
    """``integer``, ``number`` or ``string`` for a plain (or nullable) parameter."""
    if not isinstance(schema, dict) or "enum" in schema or "const" in schema:
        return None
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _simple_kind(non_null[0]) if len(non_null) == 1 else None
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "string" and ("format" in schema or "pattern" in schema):
        return None
    return kind if kind in ("integer", "number", "string") else None


def _fits_length(value: str, schema: JsonDict) -> bool:
    low, high = schema.get("minLength"), schema.get("maxLength")
    return (low is None or len(value) >= int(low)) and (high is None or len(value) <= int(high))


def _fill_from_message(arguments: JsonDict, schema: JsonDict, text: str) -> None:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return
    numbers = [float(found) for found in _NUMBER_RE.findall(text)]
    phrases = [next(g for g in match.groups() if g) for match in _QUOTED_RE.finditer(text)]
    whole_message = not phrases and bool(text.strip())
    for name, sub in properties.items():
        kind = _simple_kind(sub)
        if kind in ("integer", "number") and numbers:
            number = numbers.pop(0)
            integral = number.is_integer()
            arguments[name] = round(number) if kind == "integer" or integral else number
        elif kind == "string" and isinstance(sub, dict):
            value = phrases.pop(0) if phrases else text.strip() if whole_message else None
            whole_message = False
            if value is not None and _fits_length(value, sub):
                arguments[name] = value


def _tool_calls(body: JsonDict, scripted: Sequence[Mapping[str, Any]]) -> list[JsonDict]:
    # Number after the calls already in the conversation, so ids stay unique per thread.
    earlier = sum(
        len(message.get("tool_calls") or [])
        for message in body.get("messages") or []
        if message.get("role") == "assistant"
    )
    calls = []
    for offset, call in enumerate(scripted, start=1):
        arguments = call.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        calls.append(
            {
                "id": f"call_{earlier + offset}",
                "type": "function",
                "function": {"name": str(call["name"]), "arguments": arguments},
            }
        )
    return calls


# -- default text ------------------------------------------------------------------------

_OPENERS = (
    "In short,",
    "Put simply,",
    "Briefly,",
    "To be direct,",
    "Overall,",
    "At its core,",
)
_CLAIMS = (
    "the answer turns on a few well-understood principles rather than any single fact.",
    "the most reliable view comes from weighing the evidence before drawing conclusions.",
    "it is best understood by separating what is known from what is assumed.",
    "the core idea is simple, though the details reward a careful second look.",
    "most of the answer follows from first principles and a little context.",
    "the practical answer differs slightly from the textbook one, for good reasons.",
)
_REASONS = (
    "Experts broadly agree on the main points, while the edge cases remain debated.",
    "Concrete examples help, because they show where the general rule stops applying.",
    "Trade-offs matter here: each option gains something and gives something up.",
    "History explains much of it, since earlier choices shaped the current situation.",
    "The numbers support this reading, although sources measure things differently.",
    "A step-by-step view makes the reasoning easy to check and to repeat.",
)
_CLOSINGS = (
    "That is the short version; more detail is available on request.",
    "In summary, the claim holds in most ordinary cases.",
    "So the sensible answer is a qualified yes, with the caveats above.",
    "Taken together, these points give a balanced and usable answer.",
    "This should be a solid starting point for further reading.",
    "Those are the essentials, stated as plainly as possible.",
)


def _stable_digest(text: str) -> bytes:
    # hash() is salted per process; tests need the same phrasing in every run.
    return hashlib.sha256(text.encode()).digest()


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _default_reply(model: str, body: JsonDict) -> str:
    """A deterministic ~40-word answer whose phrasing depends on the model name."""
    messages: list[JsonDict] = body.get("messages") or []
    index = _last_user_index(messages)
    question = _content_text(messages[index].get("content")) if index >= 0 else ""
    digest = _stable_digest(model)
    sentences = [
        f"[{model}] On '{_clip(question, 80) or 'the request'}':",
        _OPENERS[digest[0] % len(_OPENERS)],
        _CLAIMS[digest[1] % len(_CLAIMS)],
        _REASONS[digest[2] % len(_REASONS)],
        _CLOSINGS[digest[3] % len(_CLOSINGS)],
    ]
    tool_results = _tool_results_after_user(messages)
    if tool_results:
        # Lets tests see that a tool's output made it back to the model.
        result = _clip(_content_text(tool_results[-1].get("content")), 80)
        sentences.append(f"The tool returned: {result}")
    return " ".join(sentences)


# -- JSON answers ------------------------------------------------------------------------


def _json_format(body: JsonDict) -> JsonDict | None:
    """The request's ``response_format`` when it asks for JSON, else None."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_schema",
        "json_object",
    ):
        return response_format
    return None


def _json_text(model: str, body: JsonDict, script: ModelScript) -> str:
    reply = script.json_reply
    if callable(reply):
        reply = reply(body)
    if isinstance(reply, str):
        return reply
    if reply is not None:
        return json.dumps(reply)
    response_format = _json_format(body) or {}
    schema = (response_format.get("json_schema") or {}).get("schema")
    if isinstance(schema, dict):
        return json.dumps(_SchemaExample(model, schema).value(schema, "answer"))
    # json_object without a schema: any object will do; keep the prose for context.
    return json.dumps({"model": model, "answer": _default_reply(model, body)})


class _SchemaExample:
    """Builds a deterministic value that validates against a JSON schema.

    Everything is filled in (all properties, one array item) until a ``$ref`` recurs
    on the current path; from there on only what the schema requires is generated,
    so recursive models (trees) stay small.
    """

    def __init__(self, model: str, root: JsonDict) -> None:
        self._model = model
        self._root = root

    def value(
        self,
        schema: Any,
        label: str,
        refs: frozenset[str] = frozenset(),
        minimal: bool = False,
    ) -> Any:
        """An example for ``schema``; ``label`` names the spot (used in strings).

        ``refs`` are the ``$ref``s being expanded on the way here; ``minimal`` is set
        once one of them recurs.
        """
        if not isinstance(schema, dict):
            return self._string({}, label)  # `true` and other odd schemas accept anything
        if "$ref" in schema:
            ref = schema["$ref"]
            return self.value(self._resolve(ref), label, refs | {ref}, minimal or ref in refs)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                return self.value(self._pick(schema[key], minimal), label, refs, minimal)
        if schema.get("allOf"):
            parts = [self.value(part, label, refs, minimal) for part in schema["allOf"]]
            if all(isinstance(part, dict) for part in parts):
                merged: JsonDict = {}
                for part in parts:
                    merged.update(part)
                return merged
            return parts[0]
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            if "properties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                kind = "string"
        if kind == "object":
            return self._object(schema, refs, minimal)
        if kind == "array":
            return self._array(schema, label, refs, minimal)
        if kind in ("integer", "number"):
            return _number(schema, integer=kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(schema, label)

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(f"only local $refs are supported, not {ref!r}")
        node: Any = self._root
        for part in ref.lstrip("#").split("/"):
            if part:
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _pick(self, options: list[Any], minimal: bool) -> Any:
        non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        if not non_null or (minimal and len(non_null) < len(options)):
            return {"type": "null"}
        return non_null[0]

    def _object(self, schema: JsonDict, refs: frozenset[str], minimal: bool) -> JsonDict:
        properties: JsonDict = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        return {
            name: self.value(sub, name, refs, minimal)
            for name, sub in properties.items()
            if not minimal or name in required
        }

    def _array(
        self, schema: JsonDict, label: str, refs: frozenset[str], minimal: bool
    ) -> list[Any]:
        prefix = schema.get("prefixItems") or []
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        wanted = 0 if minimal else min(1, int(high) if high is not None else 1)
        count = max(low, wanted, len(prefix) if high is None else min(len(prefix), int(high)))
        items = schema.get("items", {})
        values = []
        for i in range(count):
            item = prefix[i] if i < len(prefix) else items
            values.append(self.value(item, f"{label} {i + 1}", refs, minimal))
        return values

    def _string(self, schema: JsonDict, label: str) -> str:
        fmt = schema.get("format")
        if fmt == "date-time":
            return "2024-01-01T00:00:00Z"
        if fmt == "date":
            return "2024-01-01"
        if fmt == "time":
            return "00:00:00Z"
        if fmt == "email":
            return f"{_slug(self._model)}@example.com"
        if fmt in ("uri", "url"):
            return f"https://example.com/{_slug(self._model)}"
        if fmt == "uuid":
            return str(uuid.UUID(bytes=_stable_digest(self._model)[:16]))
        text = f"{self._model}: {label}"
        low = int(schema.get("minLength", 0))
        filler = f" {label or 'x'}"
        while len(text) < low:
            text += filler
        high = schema.get("maxLength")
        return text if high is None else text[: int(high)]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


def _number(schema: JsonDict, integer: bool) -> int | float:
    """``minimum`` (or 0), moved inside any exclusive bounds and ``maximum``."""
    low, high = schema.get("minimum"), schema.get("maximum")
    xlow, xhigh = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    value: float = 0
    if low is not None:
        value = low
    elif xlow is not None:
        value = xlow + 1
    if high is not None and value > high:
        value = high
    if xhigh is not None and value >= xhigh:
        floor = low if low is not None else xlow if xlow is not None else xhigh - 2
        value = xhigh - 1 if integer else (floor + xhigh) / 2
    step = schema.get("multipleOf")
    if step:
        value = math.ceil(value / step) * step
    return math.ceil(value) if integer else float(value)
