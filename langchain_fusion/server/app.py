"""The ASGI app: routes, and every error in the hosted shape.

| route | what |
|---|---|
| `GET /v1/models` | the aliases this server answers to |
| `GET /v1/key` | the calling key's spend and caps (as OpenRouter's `GET /api/v1/key`) |
| `POST /v1/chat/completions` | fusion (alias, server tool, plugin) or a plain completion |
| `POST /v1/responses` | the Responses API, with the same three entry points |
| `POST /v1/messages` | Anthropic's Messages API, with the fusion plugin or the alias |
| `GET /healthz` | for load balancers: no key, no upstream call |
| `GET /` | the browser playground (`server/playground/`; `playground=False` leaves it out) |
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from langchain_fusion.chat_models import ChatFusion
from langchain_fusion.server.catalog import DEFAULT_CAPACITY, ModelCatalog
from langchain_fusion.server.chat_completions import chat_completions
from langchain_fusion.server.errors import GatewayError
from langchain_fusion.server.gateway import KEEPALIVE_S, MAX_BODY_BYTES, ClientGone, Gateway
from langchain_fusion.server.keys import KeyRing, ServerKey, key_from_secret, request_secrets
from langchain_fusion.server.ledger import SpendLedger
from langchain_fusion.server.messages_api import messages
from langchain_fusion.server.playground import playground_routes
from langchain_fusion.server.policy import Policy
from langchain_fusion.server.redaction import SECRETS, RedactingMiddleware, install_log_redaction
from langchain_fusion.server.responses_api import responses

logger = logging.getLogger("langchain_fusion.server")
Handler = Callable[[Gateway, Request], Awaitable[Response]]


def create_app(
    models: Mapping[str, ChatFusion],
    *,
    api_key: str | None = None,
    keys: KeyRing | None = None,
    policy: Policy | None = None,
    ledger: SpendLedger | None = None,
    keepalive_s: float = KEEPALIVE_S,
    max_body_bytes: int = MAX_BODY_BYTES,
    capacity: int = DEFAULT_CAPACITY,
    playground: bool = True,
) -> Starlette:
    """The ASGI app serving fusion over `models` (alias → `ChatFusion`, e.g. from
    `fusion_models()`): their settings are the server's defaults for every request.

    `api_key` (one key) or `keys` (several, with caps, and bring-your-own-key) protect it;
    `policy` limits what a request may run; `ledger` keeps the keys' spend; `playground`
    serves the browser playground at `/`.
    """
    ring = keys or KeyRing()
    if api_key is not None:
        ring = KeyRing([*ring.keys, key_from_secret("default", api_key)], byok=ring.byok)
    catalog = ModelCatalog(models, capacity=capacity)
    catalog.warm()
    gateway = Gateway(
        catalog=catalog,
        keys=ring,
        policy=policy or Policy(),
        ledger=ledger,
        keepalive_s=keepalive_s,
        max_body_bytes=max_body_bytes,
    )
    # Every secret known by value, before anything can log or answer.
    SECRETS.add(api_key, *_upstream_keys(models, catalog))
    install_log_redaction()

    def route(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(gateway, request)
            except ClientGone:  # nobody to answer; the work was cancelled and settled
                return Response(status_code=499)
            except GatewayError as error:
                logger.info(
                    "%s %s -> %d: %s", request.method, request.url.path, error.status, error.message
                )
                return error.response()

        return endpoint

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return GatewayError(status, f"no endpoint {request.method} {request.url.path}").response()

    async def server_error(request: Request, exc: Exception) -> Response:
        logger.error("unexpected error on %s: %s", request.url.path, type(exc).__name__)
        return GatewayError(500, f"internal error: {type(exc).__name__}").response()

    app = _RedactedStarlette(
        routes=[
            Route("/v1/models", route(_models), methods=["GET"]),
            Route("/v1/key", route(_key), methods=["GET"]),
            Route("/v1/chat/completions", route(chat_completions), methods=["POST"]),
            Route("/v1/responses", route(responses), methods=["POST"]),
            Route("/v1/messages", route(messages), methods=["POST"]),
            Route("/healthz", _health, methods=["GET"]),
            *(playground_routes() if playground else []),
        ],
        exception_handlers={404: not_found, 405: not_found, Exception: server_error},
    )
    app.request_secrets = lambda headers: request_secrets(ring, headers)
    app.state.gateway = gateway
    return app


class _RedactedStarlette(Starlette):
    """Starlette with `RedactingMiddleware` outside everything, its 500 handler included:
    the one choke point every response passes."""

    request_secrets: Callable[[Mapping[str, str]], list[str]] = staticmethod(lambda _: [])

    def build_middleware_stack(self) -> ASGIApp:
        return RedactingMiddleware(super().build_middleware_stack(), self.request_secrets)


async def _models(gateway: Gateway, request: Request) -> Response:
    gateway.authenticate(request)
    data = [
        {"id": alias, "object": "model", "created": 0, "owned_by": "langchain-fusion"}
        for alias in gateway.catalog.served
    ]
    return JSONResponse({"object": "list", "data": data})


async def _key(gateway: Gateway, request: Request) -> Response:
    principal = gateway.authenticate(request)
    key: ServerKey | None = principal.key
    if key is None:
        raise GatewayError(404, "this server has no keys: there is no key to describe")
    ledger = gateway.ledger  # a database read: off the event loop
    usage = None if ledger is None else await anyio.to_thread.run_sync(ledger.usage, key.name)
    spent_usd = usage.spent_usd if usage else 0.0
    spent_tokens = usage.spent_tokens if usage else 0
    data = {
        "label": key.name,
        "usage": round(spent_usd, 10),
        "usage_tokens": spent_tokens,
        "reserved_usd": round(usage.reserved_usd, 10) if usage else 0.0,
        "reserved_tokens": usage.reserved_tokens if usage else 0,
        "limit": key.max_usd,
        "limit_remaining": None if key.max_usd is None else max(0.0, key.max_usd - spent_usd),
        "limit_tokens": key.max_tokens,
        "limit_tokens_remaining": (
            None if key.max_tokens is None else max(0, key.max_tokens - spent_tokens)
        ),
    }
    return JSONResponse({"data": data})


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _upstream_keys(models: Mapping[str, ChatFusion], catalog: ModelCatalog) -> list[str]:
    """The upstream keys the server pays with, in clear."""
    keys = [model.api_key for model in models.values()]
    keys += [model.backend.api_key for model in models.values() if model.backend is not None]
    keys.append(catalog.backend.api_key)
    return [key.get_secret_value() for key in keys if key is not None]
