"""Errors as the hosted API sends them since August: the `availability` object
(`wire/availability.py`), and the `error_type` of a streamed error chunk.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langchain_fusion.server.errors import GatewayError
from langchain_fusion.server.wire.availability import CODES, UpstreamError, availability

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


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "unmapped")


def error_type_of(failure: GatewayError) -> str:
    """The hosted `error_type` of a failure: its availability code's, else its status's."""
    if failure.availability is not None:
        return CODES[failure.availability["code"]].error_type
    return error_type(failure.status)


def with_availability(
    failure: GatewayError, upstream: BaseException | None, requested: Iterable[str]
) -> GatewayError:
    """`failure` carrying the availability of the models it asked for, with the hosted
    status of its code (an unknown model is a 400, exhausted capacity a 429, ...), when
    it came from an upstream's error."""
    if upstream is None or isinstance(upstream, GatewayError):
        return failure  # the gateway's own refusal: not about the models
    return with_upstream(failure, UpstreamError.of(upstream), requested)


def with_upstream(
    failure: GatewayError, upstream: UpstreamError, requested: Iterable[str]
) -> GatewayError:
    found = availability(upstream, requested)
    if found is not None:
        failure.availability = found.wire()
        failure.status = CODES[found.code].status
        if found.retry_after is not None:
            failure.headers["retry-after"] = str(found.retry_after)
    return failure


def stream_error(failure: GatewayError) -> dict[str, Any]:
    """The `error` of a streamed chunk: the envelope's, with `metadata.error_type`."""
    body = failure.body()["error"]
    body["metadata"] = {**(body.get("metadata") or {}), "error_type": error_type_of(failure)}
    return dict(body)
