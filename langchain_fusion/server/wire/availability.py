"""The hosted `error.availability` object: whether the models asked for can answer, mapped
from the upstream's error.

The hosted API has eleven codes, each with its HTTP status, its `error_type` and whether a
retry can succeed. An upstream that already reports the object (OpenRouter) is trusted;
otherwise the condition is read from the upstream's status and words (OpenRouter's, and
OpenAI-compatible servers' "The model `x` does not exist"). `docs_url` points at the hosted
explanation of the code. A failure that is not about availability (a 400 about the
messages, a 401, a 402 for credits) has no `availability`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

import httpx
import openai
from pydantic import ValidationError

from langchain_fusion.contract.errors import status_code_of
from langchain_fusion.server.wire.base import WireModel

AvailabilityCode = Literal[
    "model_not_found",
    "wrong_endpoint",
    "no_endpoints",
    "model_deprecated",
    "model_unavailable_upstream",
    "capacity_exhausted",
    "temporarily_unavailable",
    "region_restricted",
    "privacy_restricted",
    "constraint_filtered",
    "free_variant_ended",
]
ExcludedBy = Literal[
    "geo",
    "data_region",
    "data_policy:zdr",
    "data_policy:training",
    "max_price",
    "context_length",
    "require_parameters",
    "quantization",
    "allowed_providers",
]
DOCS_URL = "https://openrouter.ai/docs/errors#{code}"


class Kind(NamedTuple):
    status: int
    error_type: str
    retryable: bool


CODES: dict[str, Kind] = {
    "model_not_found": Kind(400, "invalid_request", False),
    "wrong_endpoint": Kind(400, "invalid_request", False),
    "no_endpoints": Kind(404, "not_found", False),
    "model_deprecated": Kind(404, "not_found", False),
    "model_unavailable_upstream": Kind(404, "not_found", False),
    "capacity_exhausted": Kind(429, "rate_limit_exceeded", True),
    "temporarily_unavailable": Kind(503, "provider_overloaded", True),
    "region_restricted": Kind(403, "permission_denied", False),
    "privacy_restricted": Kind(404, "not_found", False),
    "constraint_filtered": Kind(404, "not_found", False),
    "free_variant_ended": Kind(404, "not_found", False),
}
"""Each code's HTTP status, `error_type` and retryability, as the hosted table has them."""
assert set(CODES) == set(get_args(AvailabilityCode))


class Constraint(WireModel):
    field: str
    detail: str


class Availability(WireModel):
    code: AvailabilityCode
    retryable: bool
    retry_after: int | None = None
    requested_models: list[str]
    affected_providers: list[str] | None = None
    excluded_by: list[ExcludedBy] | None = None
    fallback_models: list[str] | None = None
    constraint: Constraint | None = None
    docs_url: str


@dataclass(frozen=True)
class UpstreamError:
    """What an upstream said when it failed: its status, words and own availability."""

    status: int | None
    message: str
    reported: Mapping[str, Any] | None = None
    retry_after: int | None = None
    unreachable: bool = False
    """No answer at all: a timeout or a refused connection."""

    @classmethod
    def of(cls, error: BaseException) -> UpstreamError:
        body = getattr(error, "body", None)  # openai.APIStatusError: the `error` object
        response = getattr(error, "response", None)
        if body is None and isinstance(response, httpx.Response):
            body = _error_object(response)
        reported = body.get("availability") if isinstance(body, dict) else None
        message = str(body.get("message") or error) if isinstance(body, dict) else str(error)
        headers = getattr(response, "headers", None)
        return cls(
            status=status_code_of(error),
            message=message,
            reported=reported if isinstance(reported, dict) else None,
            retry_after=seconds(headers.get("retry-after") if headers is not None else None),
            unreachable=isinstance(
                error,
                openai.APIConnectionError
                | httpx.TimeoutException
                | httpx.ConnectError
                | asyncio.TimeoutError
                | TimeoutError,
            ),
        )


def availability(upstream: UpstreamError, requested: Iterable[str]) -> Availability | None:
    """The availability object of an upstream failure, or None when it is not about it."""
    models = list(dict.fromkeys(requested))
    if upstream.reported is not None:
        trusted = _reported(upstream.reported, models)
        if trusted is not None:
            return trusted
    found = _condition(upstream)
    if found is None:
        return None
    code, excluded, constraint = found
    kind = CODES[code]
    after = upstream.retry_after if kind.retryable else None
    return Availability(
        code=code,
        retryable=kind.retryable,
        retry_after=after,
        requested_models=models,
        excluded_by=[excluded] if excluded else None,
        constraint=Constraint(field=constraint, detail=upstream.message) if constraint else None,
        docs_url=DOCS_URL.format(code=code),
    )


def _reported(reported: Mapping[str, Any], models: list[str]) -> Availability | None:
    """The upstream's own object, for the models this request asked for (None when it is
    not one the hosted schema knows)."""
    known = {k: v for k, v in reported.items() if k in Availability.model_fields}
    code = known.get("code")
    try:
        return Availability.model_validate(
            {
                **known,
                "requested_models": models,
                "docs_url": known.get("docs_url") or DOCS_URL.format(code=code),
            }
        )
    except ValidationError:
        return None


_CONSTRAINTS: tuple[tuple[ExcludedBy, tuple[str, ...]], ...] = (
    ("data_region", ("data region", "data_region")),
    ("max_price", ("max price", "max_price", "price")),
    ("context_length", ("context length", "context_length", "context window")),
    ("quantization", ("quantization",)),
    (
        "require_parameters",
        ("tool use", "requested parameters", "require_parameters", "support the parameters"),
    ),
    ("allowed_providers", ("allowed providers", "provider")),
)
"""A routing constraint an upstream names when it left the model no endpoint."""
_UNKNOWN_MODEL = (
    "not a valid model",
    "model not found",
    "unknown model",
    "does not exist",
    "invalid model",
    "no such model",
)
_WRONG_ENDPOINT = ("wrong endpoint", "not a chat model", "embedding model", "not supported on")
_DEPRECATED = ("deprecated", "has been removed", "was removed", "no longer available", "sunset")
_REFUSALS = (400, 403, 404, 410, 451)
"""Statuses whose words say which availability condition it is."""

_TRANSIENT = {502, 503, 504, *range(520, 530)}
"""An overloaded or unreachable provider (a 500 is a fault of its own, not availability)."""

Condition = tuple[str, ExcludedBy | None, str | None]
"""A code, what excluded the model, the constraint's field."""


def _condition(upstream: UpstreamError) -> Condition | None:
    status, text = upstream.status, upstream.message.lower()
    if status in _REFUSALS:
        found = _worded(status, text)
        if found is not None:
            return found
    if status == 404:
        return "model_unavailable_upstream", None, None
    if status == 429:
        return "capacity_exhausted", None, None
    if upstream.unreachable or (status is not None and status in _TRANSIENT):
        return "temporarily_unavailable", None, None
    return None


def _worded(status: int, text: str) -> Condition | None:
    """The condition an upstream's refusal names in words."""
    if ":free" in text and any(w in text for w in ("ended", "promotion", "no longer")):
        return "free_variant_ended", None, None
    if status == 410 or any(w in text for w in _DEPRECATED):
        return "model_deprecated", None, None
    no_endpoint = "no endpoints" in text or "no allowed providers" in text
    if no_endpoint and any(w in text for w in ("data policy", "zero data retention", "zdr")):
        zdr = "zdr" in text or "zero data retention" in text
        return "privacy_restricted", "data_policy:zdr" if zdr else "data_policy:training", None
    if no_endpoint:
        for excluded, words in _CONSTRAINTS:
            if any(w in text for w in words):
                return "constraint_filtered", excluded, excluded
        return "no_endpoints", None, None
    if status in (403, 451) and any(w in text for w in ("region", "country", "geo")):
        return "region_restricted", "geo", None
    if any(w in text for w in _WRONG_ENDPOINT):
        return "wrong_endpoint", None, "endpoint"
    if any(w in text for w in _UNKNOWN_MODEL) and status in (400, 404):
        return "model_not_found", None, None
    return None


def seconds(value: Any) -> int | None:
    """A `Retry-After` value in whole seconds (None for a date or nothing)."""
    try:
        return max(0, int(float(value))) if value is not None else None
    except (TypeError, ValueError):
        return None


def _error_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        error = json.loads(response.content).get("error")
    except (ValueError, AttributeError, httpx.ResponseNotRead):
        return None
    return error if isinstance(error, dict) else None
