"""An OpenAI-compatible server for `openrouter/fusion` and `openrouter/fusion-flash`.

Any OpenAI client can then deliberate: `GET /v1/models` lists the two aliases, and
`POST /v1/chat/completions` answers with a `ChatFusion` per alias (built once, at
startup), streaming or not, with the caller's function tools returned as `tool_calls`.
The response's `model` is the concrete outer model, and the deliberation's result (the
contract's JSON) rides along in a top-level `fusion` field, which OpenAI SDKs keep as an
extra attribute (`completion.model_extra["fusion"]`).

Starlette serves the HTTP API and uvicorn runs it (`langchain-fusion serve`, `serve()`,
or `FusionServer` in a background thread for tests and notebooks).

Example::

    from langchain_fusion.server import FusionServer, create_app, fusion_models

    with FusionServer(create_app(fusion_models())) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        client.chat.completions.create(model="openrouter/fusion", messages=[...])
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

import uvicorn
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_messages
from langchain_core.messages.ai import UsageMetadata
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from langchain_fusion._background_server import BackgroundServer, bind_socket, http_url
from langchain_fusion.chat_models import FUSION_ALIASES, ChatFusion
from langchain_fusion.contract.errors import describe_error, status_code_of
from langchain_fusion.graph.prompts import FUSION_TOOL_NAME
from langchain_fusion.local import (
    LOCAL_ANALYSIS_LIMITS,
    LOCAL_JUDGE_TOKENS,
    LOCAL_PANEL_SIZE,
    LOCAL_PANEL_TOKENS,
    LocalModelServer,
)

__all__ = [
    "FUSION_MODELS",
    "ChatCompletionRequest",
    "FusionServer",
    "create_app",
    "fusion_models",
    "local_fusion_models",
    "serve",
]

logger = logging.getLogger(__name__)

FUSION_MODELS: tuple[str, ...] = tuple(FUSION_ALIASES)
"""The model ids this server answers to."""
KEEPALIVE_S = 15.0
"""Seconds between SSE comments while a stream waits for the deliberation, so that
proxies and clients do not drop an idle connection."""
_T = TypeVar("_T")


# --- building the models --------------------------------------------------------------------------


def fusion_models(**settings: Any) -> dict[str, ChatFusion]:
    """One `ChatFusion` per alias, with the same `settings` (ChatFusion's fields).

    The backend is OpenRouter, or `OPENROUTER_BASE_URL` / `base_url` / `backend`, with the
    key from `OPENROUTER_API_KEY` / `api_key`. Raises `ValueError` on invalid settings.
    """
    return {alias: ChatFusion(model=alias, **settings) for alias in FUSION_MODELS}


def local_fusion_models(server: LocalModelServer, **settings: Any) -> dict[str, ChatFusion]:
    """The aliases on the embedded model: a panel of seeded seats, a judge, an outer model.

    The offline defaults of `create_local_fusion_graph` apply (short answers, a tight
    judge schema). A 135M model cannot be trusted to choose a tool, so deliberation is
    forced (`tool_choice="required"`) unless `settings` say otherwise.
    """
    backend = server.backend()
    name = server.model_name
    panel = [
        backend.chat_model(name, panel_index=index).model_copy(
            update={"max_tokens": LOCAL_PANEL_TOKENS}
        )
        for index in range(LOCAL_PANEL_SIZE)
    ]
    judge = backend.chat_model(name).model_copy(update={"max_tokens": LOCAL_JUDGE_TOKENS})
    defaults: dict[str, Any] = {
        "analysis_models": panel,
        "judge_model": judge,
        "outer_model": backend.chat_model(name),
        "backend": backend,
        "analysis_limits": LOCAL_ANALYSIS_LIMITS,
        "tool_choice": "required",
    }
    return fusion_models(**{**defaults, **settings})


# --- the request ----------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _FunctionCall(_Strict):
    name: str
    arguments: str


class _ToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: _FunctionCall


class _Message(BaseModel):
    # Unknown keys (`refusal`, `annotations`, ...) come back from clients that replay a
    # previous response; they carry nothing a model needs.
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> _Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs 'tool_call_id'")
        if self.role != "assistant" and self.content is None:
            raise ValueError(f"a {self.role} message needs 'content'")
        if self.role == "assistant" and self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs 'content' or 'tool_calls'")
        if isinstance(self.content, list):
            for part in self.content:
                if not isinstance(part.get("type"), str):
                    raise ValueError("each content part needs a 'type'")
        return self

    @property
    def text(self) -> str:
        """The message's text parts, joined."""
        if isinstance(self.content, str):
            return self.content
        parts = self.content or []
        return "".join(str(p.get("text") or "") for p in parts if p.get("type") == "text")


class _FunctionSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _FunctionTool(_Strict):
    type: Literal["function"]
    function: _FunctionSpec


class _FusionServerTool(_Strict):
    """The hosted server-tool form; this server's fusion is configured at startup."""

    type: Literal["openrouter:fusion"]
    parameters: dict[str, Any] | None = None


class _NamedFunction(_Strict):
    name: str


class _NamedToolChoice(_Strict):
    type: Literal["function"]
    function: _NamedFunction


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The body of `POST /v1/chat/completions`: OpenAI's fields that this server honours.

    Other OpenAI fields (`user`, `seed`, `metadata`, ...) are accepted and ignored; fields
    whose meaning cannot be honoured (`n > 1`, a JSON `response_format`) are refused.
    """

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[_Message] = Field(min_length=1)
    tools: (
        list[Annotated[_FunctionTool | _FusionServerTool, Field(discriminator="type")]] | None
    ) = None
    tool_choice: Literal["none", "auto", "required"] | _NamedToolChoice | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: _StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    response_format: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _supported(self) -> ChatCompletionRequest:
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("'stop' takes at most 4 sequences")
        kind = (self.response_format or {}).get("type", "text")
        if kind != "text":
            raise ValueError(
                f"response_format {kind!r} is not supported (fusion answers in text); "
                "ask for structured output through a function tool"
            )
        return self


class _RequestError(ValueError):
    """A request this server refuses (400) before any model is called."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class _Call:
    """A validated request, ready for `ChatFusion`."""

    messages: list[BaseMessage]
    stop: list[str] | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False


def _prepare(request: ChatCompletionRequest) -> _Call:
    """Check what the schema cannot, and translate the request for `ChatFusion`."""
    if not any(m.role == "user" and m.text.strip() for m in request.messages):
        raise _RequestError("'messages' needs a user message with text", "messages")
    known_calls: set[str] = set()
    for index, message in enumerate(request.messages):
        known_calls.update(call.id for call in message.tool_calls or [])
        if message.role == "tool" and message.tool_call_id not in known_calls:
            raise _RequestError(
                f"messages[{index}]: tool_call_id {message.tool_call_id!r} answers no earlier "
                "assistant tool call",
                f"messages[{index}].tool_call_id",
            )

    functions: list[dict[str, Any]] = []
    for tool in request.tools or []:
        if isinstance(tool, _FusionServerTool):
            if tool.parameters:
                raise _RequestError(
                    "per-request fusion parameters are not supported here: this server's "
                    "panel and judge are set when it starts",
                    "tools",
                )
            continue  # fusion is always on offer: that is what the model alias means
        functions.append(tool.model_dump(exclude_none=True))
    names = [f["function"]["name"] for f in functions]
    if FUSION_TOOL_NAME in names:
        raise _RequestError(f"the tool name {FUSION_TOOL_NAME!r} is reserved", "tools")
    if len(set(names)) != len(names):
        raise _RequestError("tool names must be unique", "tools")

    choice: str | dict[str, Any] | None = None
    if isinstance(request.tool_choice, _NamedToolChoice):
        name = request.tool_choice.function.name
        if name != FUSION_TOOL_NAME and name not in names:
            raise _RequestError(f"tool_choice names {name!r}, which is not in 'tools'", "tools")
        choice = request.tool_choice.model_dump()
    else:
        choice = request.tool_choice

    kwargs: dict[str, Any] = {}
    if functions:
        kwargs["tools"] = functions
    if choice is not None:
        kwargs["tool_choice"] = choice
    # The request's sampling settings are the outer model's, as ChatFusion's own fields.
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    limit = request.max_completion_tokens or request.max_tokens
    if limit is not None:
        kwargs["max_tokens"] = limit
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    try:
        messages = convert_to_messages(
            [{"content": "", **m.model_dump(exclude_none=True)} for m in request.messages]
        )
    except ValueError as error:
        raise _RequestError(f"messages: {error}", "messages") from None
    return _Call(
        messages=messages,
        stop=stop or None,
        kwargs=kwargs,
        stream=request.stream,
        include_usage=bool(request.stream_options and request.stream_options.include_usage),
    )


# --- responses ------------------------------------------------------------------------------------


def _error(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An OpenAI-style error body."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _validation_message(error: ValidationError) -> tuple[str, str | None]:
    problems = []
    for item in error.errors(include_url=False):
        location = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"]
        ).lstrip(".")
        problems.append(f"{location}: {item['msg']}" if location else item["msg"])
    first = error.errors(include_url=False)[0]["loc"] if error.error_count() else ()
    param = str(first[0]) if first else None
    return "; ".join(problems), param


def _upstream_error(error: BaseException) -> JSONResponse:
    """A failed deliberation or outer call, as the client should see it.

    Rate limits and exhausted credits keep their status; anything else upstream is a 502.
    `x-should-retry: false` stops OpenAI SDKs from re-running a whole deliberation: the
    inner calls have had their own retries already.
    """
    upstream = status_code_of(error)
    if upstream in (402, 429):
        status = upstream
    elif (
        isinstance(error, asyncio.TimeoutError | TimeoutError) or "Timeout" in type(error).__name__
    ):
        status = 504
    else:
        status = 502
    return _error(
        status,
        f"the fusion backend failed: {describe_error(error)}",
        kind="upstream_error",
        code=str(upstream) if upstream else None,
        headers={"x-should-retry": "false"},
    )


def _usage(usage: UsageMetadata | None) -> dict[str, Any]:
    usage = usage or UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0)
    body: dict[str, Any] = {
        "prompt_tokens": usage.get("input_tokens", 0),
        "completion_tokens": usage.get("output_tokens", 0),
        "total_tokens": usage.get("total_tokens", 0),
    }
    cached = (usage.get("input_token_details") or {}).get("cache_read")
    if cached:
        body["prompt_tokens_details"] = {"cached_tokens": cached}
    reasoning = (usage.get("output_token_details") or {}).get("reasoning")
    if reasoning:
        body["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return body


def _tool_calls(message: AIMessage | AIMessageChunk) -> list[dict[str, Any]]:
    return [
        {
            "id": call["id"] or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["args"])},
        }
        for call in message.tool_calls
        if call["name"] != FUSION_TOOL_NAME
    ]


def _finish_reason(message: AIMessage | AIMessageChunk, has_tool_calls: bool) -> str:
    if has_tool_calls:
        return "tool_calls"
    reason = message.response_metadata.get("finish_reason")
    return reason if reason in ("stop", "length", "content_filter") else "stop"


def _model_name(message: AIMessage | AIMessageChunk, fallback: str) -> str:
    name = message.response_metadata.get("model_name")
    return name if isinstance(name, str) and name and name not in FUSION_MODELS else fallback


def _completion(
    message: AIMessage, ident: str, created: int, fallback_model: str
) -> dict[str, Any]:
    tool_calls = _tool_calls(message)
    body: dict[str, Any] = {"role": "assistant", "content": message.text or None, "refusal": None}
    if tool_calls:
        body["tool_calls"] = tool_calls
    elif body["content"] is None:
        body["content"] = ""
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": _model_name(message, fallback_model),
        "choices": [
            {
                "index": 0,
                "message": body,
                "logprobs": None,
                "finish_reason": _finish_reason(message, bool(tool_calls)),
            }
        ],
        "usage": _usage(message.usage_metadata),
        "system_fingerprint": None,
        "fusion": message.response_metadata.get("fusion_result"),
    }


def _outer_label(chat: ChatFusion) -> str:
    return chat.outer_model_name


# --- the app --------------------------------------------------------------------------------------


class _ClientGone(Exception):
    """The client closed the connection before the answer was ready."""


async def _unless_disconnected(request: Request, work: Awaitable[_T]) -> _T:
    """Await `work`, cancelling it when the client disconnects: no deliberation for nobody."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        raise _ClientGone
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(
    models: Mapping[str, ChatFusion],
    *,
    api_key: str | None = None,
    keepalive_s: float = KEEPALIVE_S,
) -> Starlette:
    """The ASGI app serving `models` (alias → `ChatFusion`, e.g. from `fusion_models()`).

    With `api_key`, every request must carry it as `Authorization: Bearer <api_key>`.
    """
    served = dict(models)
    if not served:
        raise ValueError("create_app needs at least one model")

    def unauthorised(request: Request) -> JSONResponse | None:
        if api_key is None:
            return None
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), api_key.encode()):
            return None
        return _error(401, "Incorrect API key provided.", code="invalid_api_key")

    async def list_models(request: Request) -> Response:
        if denied := unauthorised(request):
            return denied
        data = [
            {"id": alias, "object": "model", "created": 0, "owned_by": "langchain-fusion"}
            for alias in served
        ]
        return JSONResponse({"object": "list", "data": data})

    async def chat_completions(request: Request) -> Response:
        if denied := unauthorised(request):
            return denied
        try:
            body = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return _error(400, f"the request body is not valid JSON: {error}")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object")
        alias = body.get("model")
        if not isinstance(alias, str) or not alias:
            return _error(400, "'model' is required", param="model")
        if alias not in served:
            return _error(
                404,
                f"The model {alias!r} does not exist here; this server serves: "
                + ", ".join(served),
                param="model",
                code="model_not_found",
            )
        try:
            call = _prepare(ChatCompletionRequest.model_validate(body))
        except ValidationError as error:
            problems, param = _validation_message(error)
            return _error(400, problems, param=param)
        except _RequestError as error:
            return _error(400, str(error), param=error.param)

        chat = served[alias]
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if call.stream:
            stream = _sse(chat, call, ident, created, keepalive_s)
            return StreamingResponse(
                stream,
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            )
        try:
            message = await _unless_disconnected(
                request, chat.ainvoke(call.messages, stop=call.stop, **call.kwargs)
            )
        except _ClientGone:
            return Response(status_code=499)
        except Exception as error:
            logger.warning("fusion request failed: %s", describe_error(error))
            return _upstream_error(error)
        return JSONResponse(_completion(message, ident, created, _outer_label(chat)))

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return _error(
            status,
            f"no endpoint {request.method} {request.url.path}",
            code="not_found" if status == 404 else None,
        )

    return Starlette(
        routes=[
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        ],
        exception_handlers={404: not_found, 405: not_found},
    )


async def _sse(
    chat: ChatFusion, call: _Call, ident: str, created: int, keepalive_s: float
) -> AsyncIterator[bytes]:
    """The streamed completion as OpenAI's `chat.completion.chunk` server-sent events.

    The concrete model is known only when the outer model finishes: chunks before then
    name the outer model's configured slug, the finishing chunk the model that answered.
    """
    model = _outer_label(chat)

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n".encode()

    def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

    yield event(delta({"role": "assistant", "content": ""}))
    # The deliberation runs in a task of its own and feeds a queue, so that keep-alive
    # comments can go out while it thinks (an async generator must not be stepped from
    # several tasks).
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for piece in chat.astream(call.messages, stop=call.stop, **call.kwargs):
                await queue.put(("chunk", piece))
            await queue.put(("end", None))
        except Exception as error:
            await queue.put(("error", error))

    task = asyncio.ensure_future(pump())
    total: AIMessageChunk | None = None
    try:
        while True:
            try:
                kind, item = await asyncio.wait_for(queue.get(), timeout=keepalive_s)
            except asyncio.TimeoutError:
                yield b": deliberating\n\n"
                continue
            if kind == "error":
                logger.warning("fusion stream failed: %s", describe_error(item))
                body = json.loads(bytes(_upstream_error(item).body))
                yield f"data: {json.dumps(body)}\n\n".encode()
                return
            if kind == "end":
                break
            piece = item
            if not isinstance(piece, AIMessageChunk):
                continue
            total = piece if total is None else total + piece
            if piece.text:
                yield event(delta({"content": piece.text}))
    finally:
        if not task.done():
            task.cancel()  # the client left: stop the deliberation
            with contextlib.suppress(asyncio.CancelledError):
                await task

    final = total if total is not None else AIMessageChunk(content="")
    tool_calls = _tool_calls(final)
    model = _model_name(final, model)
    if tool_calls:
        indexed = [{"index": i, **call} for i, call in enumerate(tool_calls)]
        yield event(delta({"tool_calls": indexed}))
    fusion = final.response_metadata.get("fusion_result")
    yield event(delta({}, _finish_reason(final, bool(tool_calls))), fusion=fusion)
    if call.include_usage:
        yield event([], usage=_usage(final.usage_metadata))
    yield b"data: [DONE]\n\n"


# --- running it -----------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve `app` in this thread until interrupted (Ctrl-C stops it gracefully)."""
    sock = bind_socket(host, port)
    try:
        if announce is not None:
            announce(http_url(host, int(sock.getsockname()[1]), "/v1"))
        config = uvicorn.Config(app, lifespan="off", ws="none", timeout_graceful_shutdown=5)
        with contextlib.suppress(KeyboardInterrupt):
            # uvicorn shuts down gracefully, then re-raises the Ctrl-C it caught: done.
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


class FusionServer(BackgroundServer):
    """The fusion server on `host` (default 127.0.0.1) and a free port, in a thread.

    Use as a context manager (or `start()` / `stop()`); `base_url` is the `/v1` endpoint
    for `openai.OpenAI(base_url=...)`.
    """

    def __init__(self, app: Starlette, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """A stopped server for `app` (see `create_app`)."""
        # loop="auto": uvloop where it is installed, as `langchain-fusion serve` runs.
        super().__init__(app, host=host, port=port, name="fusion-server", loop="auto")

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT/v1` while running."""
        return self.url("/v1")
