"""A chat completion without fusion: relayed to the backend as it came.

This is what an OpenRouter user who switched base URL expects of a request that names a
plain model: every field reaches the backend unchanged (`response_format`, `n`,
`provider`, ...), and the answer comes back as the backend gave it. The server still
applies its policy first (allow-list, per-request cap, the key's spend cap), pays with
the server's key or the caller's own (bring-your-own-key), and puts upstream errors in
the hosted shape.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from langchain_fusion.server.errors import GatewayError, invalid, redact
from langchain_fusion.server.gateway import SSE_HEADERS, ClientGone, Gateway, unless_disconnected
from langchain_fusion.server.keys import Principal, secrets_of
from langchain_fusion.server.ledger import Reservation, Spend
from langchain_fusion.server.policy import ASSUMED_OUTPUT_TOKENS, plain_prompt_tokens
from langchain_fusion.server.stream_redaction import RelayRedactor
from langchain_fusion.server.wire.availability import UpstreamError, seconds
from langchain_fusion.server.wire.chat import ChunkWriter
from langchain_fusion.server.wire.errors import with_upstream

logger = logging.getLogger("langchain_fusion.server")

# Client headers worth passing on: OpenRouter's app attribution.
_FORWARDED = ("http-referer", "x-title")


async def relay(
    gateway: Gateway, request: Request, principal: Principal, body: dict[str, Any]
) -> Response:
    """Check the policy, hold the worst case, relay, settle."""
    model = body["model"]
    fallbacks = body.get("models")
    models = [model]
    if isinstance(fallbacks, list):
        models += [m for m in fallbacks if isinstance(m, str)]
    gateway.policy.check_models(models)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty list", "messages")
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise invalid("'max_tokens' must be a positive integer", "max_tokens")
    n = body.get("n", 1)
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise invalid("'n' must be a positive integer", "n")
    prompt = plain_prompt_tokens(body)
    output = limit or ASSUMED_OUTPUT_TOKENS
    # Each choice writes its whole output limit: `n` is billed n times.
    estimates = [gateway.policy.call_worst_case(m, prompt, output, n=n or 1) for m in models]
    worst = max(estimates, key=lambda e: (e.cost is None, e.cost or 0.0))
    gateway.policy.check_budget(worst)
    reservation = await gateway.reserve(principal, worst)

    backend = gateway.catalog.backend_for(principal.upstream_key)
    key = backend.api_key.get_secret_value() if backend.api_key else "not-set"
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    headers.update({h: request.headers[h] for h in _FORWARDED if h in request.headers})
    url = backend.base_url.rstrip("/") + "/chat/completions"
    stream = bool(body.get("stream"))
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    if stream and not wants_usage:
        # As hosted, a stream always ends with usage (and the ledger needs it): ask for it.
        options = {**(body.get("stream_options") or {}), "include_usage": True}
        body = {**body, "stream_options": options}
    secrets = [key, *secrets_of(principal)]
    upstream = gateway.http.build_request("POST", url, json=body, headers=headers)
    try:
        response = await unless_disconnected(request, gateway.http.send(upstream, stream=stream))
    except ClientGone:  # the call may have reached the backend: charge its worst case
        await gateway.settle(reservation, None)
        return Response(status_code=499)
    except httpx.HTTPError as error:
        await gateway.settle(reservation, Spend(0, 0.0))
        reason = f"the backend could not be reached: {type(error).__name__}: {error}"
        raise GatewayError(502, redact(reason, secrets)) from None
    if response.status_code >= 400:
        raw = await response.aread()
        await response.aclose()
        await gateway.settle(reservation, Spend(0, 0.0))
        raise _upstream_error(response, raw, secrets, models)
    if not stream:
        raw = await response.aread()
        try:
            data = json.loads(raw)
        except ValueError:
            await gateway.settle(reservation, Spend(0, 0.0))
            raise GatewayError(502, "the backend answered with a body that is not JSON") from None
        await gateway.settle(reservation, _spend(data.get("usage"), gateway, model))
        logger.info("chat.completions (plain) key=%s model=%s", principal.name, model)
        return JSONResponse(data)
    return StreamingResponse(
        _relay_stream(gateway, response, reservation, models, keep_usage=True),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


_ABSENT = ("usage", "system_fingerprint")
"""Chunk fields the hosted schema allows as a value or absent, never `null`."""


async def _relay_stream(
    gateway: Gateway,
    response: httpx.Response,
    reservation: Reservation | None,
    models: list[str],
    *,
    keep_usage: bool,
) -> AsyncIterator[bytes]:
    """The backend's SSE lines as they come; the usage read on the way."""
    model = models[0]
    usage: Any = None
    redactor = RelayRedactor()  # a secret split over chunks is matched whole
    try:
        async for line in response.aiter_lines():
            if line.startswith("data: [DONE]") and (rest := redactor.rest()) is not None:
                yield f"data: {json.dumps(rest)}\n\n".encode()
            if line.startswith("data: {"):
                try:
                    chunk = json.loads(line[6:])
                except ValueError:
                    chunk = None
                if isinstance(chunk, dict) and isinstance(chunk.get("error"), dict):
                    failure = _stream_error(chunk["error"], models)  # the hosted shape: a chunk
                    writer = ChunkWriter(
                        str(chunk.get("id") or "chatcmpl-error"),
                        int(chunk.get("created") or time.time()),
                        str(chunk.get("model") or model),
                    )
                    yield f"data: {json.dumps(writer.error(failure))}\n\n".encode()
                    return
                if isinstance(chunk, dict) and chunk.get("choices"):
                    redacted = redactor.chunk(chunk)
                    if redacted != chunk:
                        chunk, line = redacted, "data: " + json.dumps(redacted)
                if isinstance(chunk, dict) and any(chunk.get(k, 0) is None for k in _ABSENT):
                    # OpenAI's nulls, where the hosted chunk has a value or no field.
                    chunk = {k: v for k, v in chunk.items() if k not in _ABSENT or v is not None}
                    line = "data: " + json.dumps(chunk)
                if isinstance(chunk, dict) and chunk.get("usage"):
                    usage = chunk["usage"]
                    if not keep_usage:
                        if not chunk.get("choices"):
                            continue  # the usage-only chunk the client did not ask for
                        line = "data: " + json.dumps({**chunk, "usage": None})
            yield (line + "\n").encode()
    finally:
        await response.aclose()
        await gateway.settle(reservation, _spend(usage, gateway, model))


def _spend(usage: Any, gateway: Gateway, model: str) -> Spend | None:
    if not isinstance(usage, dict):
        return None  # unknown: the reservation is charged in full
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    tokens = int(usage.get("total_tokens") or prompt + completion)
    cost = usage.get("cost")
    if isinstance(cost, int | float):
        return Spend(tokens, float(cost))
    price = gateway.policy.prices.get(model)
    usd = None if price is None else prompt * price.prompt + completion * price.completion
    return Spend(tokens, usd)


def _stream_error(error: dict[str, Any], models: list[str]) -> GatewayError:
    """An error event the backend sent mid-stream, its status kept when it gave one."""
    code = error.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else 502
    details = {k: v for k, v in error.items() if k not in ("message", "code", "availability")}
    metadata: dict[str, Any] = {"upstream_code": code}
    if details:
        metadata["upstream"] = json.loads(redact(json.dumps(details)))
    message = str(error.get("message") or "the backend failed")
    failure = GatewayError(status, message, metadata=metadata)
    return with_upstream(failure, _upstream(code, message, error), models)


def _upstream(status: Any, message: str, error: Any, retry: Any = None) -> UpstreamError:
    reported = error.get("availability") if isinstance(error, dict) else None
    return UpstreamError(
        status=status if isinstance(status, int) else None,
        message=message,
        reported=reported if isinstance(reported, dict) else None,
        retry_after=seconds(retry),
    )


def _upstream_error(
    response: httpx.Response, raw: bytes, secrets: list[str], models: list[str]
) -> GatewayError:
    """The backend's error in the hosted shape, with its status, its own words and the
    availability of the models asked for."""
    message = f"the backend answered {response.status_code}"
    metadata: dict[str, Any] = {"upstream_status": response.status_code}
    try:
        error = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        message = str(error.get("message") or message)
        skip = ("message", "code", "availability")
        details = {k: v for k, v in error.items() if k not in skip}
        if details:
            metadata["upstream"] = json.loads(redact(json.dumps(details), secrets))
    retry = response.headers.get("retry-after")
    failure = GatewayError(
        response.status_code,
        redact(message, secrets),
        metadata=metadata,
        headers={"retry-after": retry} if retry else None,
    )
    upstream = _upstream(response.status_code, failure.message, error, retry)
    return with_upstream(failure, upstream, models)
