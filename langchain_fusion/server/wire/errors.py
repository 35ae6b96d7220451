"""Errors as the hosted API sends them since August: the `availability` object, and the
`error_type` of a streamed error chunk.

`availability` says whether the models asked for can answer: `code` (the kind of problem),
`retryable`, `retry_after` (seconds, when the upstream said), `requested_models` and
`fallback_models` (this gateway has no fallbacks: always empty). It is mapped from the
upstream error; a failure that is not about the models' availability has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langchain_fusion.contract.errors import status_code_of
from langchain_fusion.server.errors import GatewayError

ERROR_TYPES = {
    400: "invalid_request",
    401: "authentication",
    402: "payment_required",
    403: "permission_denied",
    404: "not_found",
    408: "timeout",
    413: "payload_too_large",
    422: "unprocessable",
    429: "rate_limit_exceeded",
    500: "server",
    502: "provider_unavailable",
    503: "provider_unavailable",
    504: "timeout",
    529: "provider_overloaded",
}
"""HTTP status → the hosted `ApiErrorType` of a streamed error."""

_CAPACITY = {429, 503, 529}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "unmapped")


def availability(
    upstream: BaseException | None, status: int | None, requested: Iterable[str]
) -> dict[str, Any] | None:
    """The `availability` object of a failure, or None when it is not about availability.

    An upstream 404, or a 400 saying the model is unknown, is `model_not_found` (answered
    with 400, as hosted); a 429, 503 or 529
    is `capacity_exhausted`, retryable, with the upstream's `Retry-After` in seconds.
    """
    code = status_code_of(upstream) if upstream is not None else status
    if code == 404 or (code == 400 and _names_an_unknown_model(upstream)):
        kind, retryable = "model_not_found", False
    elif code in _CAPACITY:
        kind, retryable = "capacity_exhausted", True
    else:
        return None
    body: dict[str, Any] = {
        "code": kind,
        "retryable": retryable,
        "requested_models": list(dict.fromkeys(requested)),
        "fallback_models": [],
    }
    if retryable and (after := _retry_after(upstream)) is not None:
        body["retry_after"] = after
    return body


_UNKNOWN_MODEL = ("not a valid model", "model not found", "unknown model", "no endpoints found")
"""How upstreams word a 400 for a model they do not have (OpenRouter: "... is not a valid
model ID")."""


def _names_an_unknown_model(error: BaseException | None) -> bool:
    text = str(error).lower() if error is not None else ""
    return any(words in text for words in _UNKNOWN_MODEL)


def _retry_after(error: BaseException | None) -> int | None:
    response = getattr(error, "response", None)
    value = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    try:
        return max(0, int(float(value))) if value is not None else None
    except ValueError:
        return None


def with_availability(
    failure: GatewayError, upstream: BaseException | None, requested: Iterable[str]
) -> GatewayError:
    """`failure` carrying the availability of the models it asked for."""
    found = availability(upstream, failure.status, requested)
    if found is not None:
        failure.availability = found
        if found["code"] == "model_not_found":
            failure.status = 400  # hosted: an unknown model is the request's fault
    return failure


def stream_error(failure: GatewayError) -> dict[str, Any]:
    """The `error` of a streamed chunk: the envelope's, with `metadata.error_type`."""
    body = failure.body()["error"]
    body["metadata"] = {**(body.get("metadata") or {}), "error_type": error_type(failure.status)}
    return dict(body)
