"""`ScriptedOpenAIServer`: the routes, the lifecycle and the request log.

It runs Starlette under uvicorn in a background thread on ``127.0.0.1`` and a free
port. Each model name answers according to a `ModelScript`; every request is recorded
with timestamps, so tests can check what was sent and whether calls overlapped.

Example::

    with ScriptedOpenAIServer({"judge": ModelScript(json_reply={"winner": 1})}) as server:
        llm = ChatOpenAI(base_url=server.base_url, api_key="test", model="panel-a")
        llm.invoke("What is X?")
        assert server.requests_for("panel-a")[0].stream is False
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from langchain_fusion.background import BackgroundServer
from langchain_fusion.testing.completions import plan_completion
from langchain_fusion.testing.playback import Plan, Playback, error_plan, json_plan, refusal_plan
from langchain_fusion.testing.script import (
    JsonDict,
    LogEntry,
    ModelScript,
    RecordedRequest,
    RequestLog,
)
from langchain_fusion.testing.validation import find_refusal

__all__ = ["ScriptedOpenAIServer"]


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

    ``strict`` (the default) refuses, with OpenAI's 400 and wording, the requests a real
    provider refuses: a tool call left without its tool message, a tool message that
    answers no call, a ``tool_choice`` naming no declared tool, malformed messages and
    tools (see `langchain_fusion.testing.validation`). The refusal comes before any
    scripted latency or fault, and is logged like any answer (``status_code`` 400,
    ``error``). ``strict=False`` answers whatever it is sent.
    """

    def __init__(
        self,
        scripts: Mapping[str, ModelScript] | None = None,
        default: ModelScript | None = None,
        *,
        strict: bool = True,
    ) -> None:
        """Create a stopped server with ``scripts`` per model name and a ``default``."""
        self.strict = strict
        self._lock = threading.Lock()  # guards scripts, counters and the sequence
        self._scripts: dict[str, ModelScript] = dict(scripts or {})
        self._default = default if default is not None else ModelScript()
        self._log = RequestLog()
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
        """A fresh stop event on the server's loop, for `Playback` to wait on."""
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

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request so far, in arrival order."""
        return self._log.snapshot()

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
            return self._playback(entry, error_plan(400, message))
        if not isinstance(body, dict):
            entry = self._record(request, "", headers, {}, False, received_at)
            message = "request body must be a JSON object"
            return self._playback(entry, error_plan(400, message))
        model = body.get("model")
        stream = body.get("stream") is True
        entry = self._record(
            request, model if isinstance(model, str) else "", headers, body, stream, received_at
        )
        if not isinstance(model, str) or not model:
            message = "'model' is required and must be a non-empty string"
            return self._playback(entry, error_plan(400, message, param="model"))
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            message = "'messages' is required and must be a non-empty list of messages"
            return self._playback(entry, error_plan(400, message, param="messages"))
        if not all(isinstance(message, dict) for message in messages):
            message = "each item of 'messages' must be an object"
            return self._playback(entry, error_plan(400, message, param="messages"))
        if self.strict:
            # Before _admit: a refused request is no attempt, so fail_first keeps counting.
            refusal = find_refusal(body)
            if refusal is not None:
                plan = refusal_plan(refusal.message, refusal.param, refusal.code)
                return self._playback(entry, plan)

        script, attempt, unlucky, sequence = self._admit(model)
        try:
            plan = plan_completion(model, body, script, attempt, unlucky, sequence)
        except Exception as error:  # a test's reply callable failed: report it, not crash
            plan = error_plan(500, f"scripted reply for {model} raised {error!r}", "server_error")
        delay, first = plan.events[0]
        plan.events[0] = (delay + script.time_to_first_token, first)
        return self._playback(entry, plan)

    async def _list_models(self, request: Request) -> Response:
        entry = self._record(request, "", _lower(request), {}, False, time.monotonic())
        with self._lock:
            scripts = dict(self._scripts)
        data = []
        for name, script in scripts.items():
            row: JsonDict = {"id": name, "object": "model", "created": 0, "owned_by": "scripted"}
            if name.startswith("~") and script.response_model:
                # As OpenRouter lists a `~author/family-latest` alias: with its target.
                row["alias_target"] = {"slug": script.response_model, "name": script.response_model}
            data.append(row)
        return self._playback(entry, json_plan(200, {"object": "list", "data": data}))

    async def _unknown_endpoint(self, request: Request) -> Response:
        entry = self._record(request, "", _lower(request), {}, False, time.monotonic())
        message = f"no scripted endpoint for {request.method} {request.url.path}"
        return self._playback(entry, error_plan(404, message, "not_found_error"))

    # -- helpers ---------------------------------------------------------------------

    def _record(
        self,
        request: Request,
        model: str,
        headers: dict[str, str],
        body: JsonDict,
        stream: bool,
        received_at: float,
    ) -> LogEntry:
        return self._log.add(LogEntry(request.url.path, model, headers, body, stream, received_at))

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

    def _playback(self, entry: LogEntry, plan: Plan) -> Response:
        return Playback(self._log, self._stop_event, entry, plan)


def _lower(request: Request) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}
