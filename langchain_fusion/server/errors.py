"""Errors in the hosted shape, on every path, with no secret in them.

OpenRouter answers `{"error": {"code": <the HTTP status>, "message": ..., "metadata": ...}}`
and its SDK refuses a `code` that is not that integer; OpenAI SDKs read `message` from the
same object. Every refusal and failure here is a `GatewayError`, rendered by `body()`; a
stream that fails after its headers went out sends it as the hosted error chunk or event
(`wire/chat.py`, `wire/errors.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse

from langchain_fusion.contract.errors import describe_error, status_code_of
from langchain_fusion.server.redaction import redact as redact

NO_RETRY = {"x-should-retry": "false"}
"""Stops OpenAI SDKs from re-running a whole deliberation: its inner calls were retried."""


class RedactingFilter(logging.Filter):
    """Scrubs known secrets and key-shaped strings from a record's message (every record
    is already scrubbed when made, see `redaction.install_log_redaction`; this filter
    is for handlers a host application attaches before that)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class GatewayError(Exception):
    """A request refused or failed, with its HTTP status and the hosted error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = redact(message)
        self.metadata = dict(metadata) if metadata else None
        self.headers = dict(headers or {})
        self.availability: dict[str, Any] | None = None
        """The hosted `availability` object, when the failure is about the models'."""

    def body(self) -> dict[str, Any]:
        """`{"error": {"code": status, "message": ..., "metadata": ..., "availability"?}}`."""
        error = {"code": self.status, "message": self.message, "metadata": self.metadata}
        if self.availability is not None:
            error["availability"] = self.availability
        return {"error": error}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def invalid(message: str, param: str | None = None) -> GatewayError:
    """A 400 naming the offending field."""
    return GatewayError(400, message, metadata={"param": param} if param else None)


def from_validation(error: ValidationError, prefix: str = "") -> GatewayError:
    """A pydantic error as one readable 400: `field.path: problem; ...`."""
    problems = []
    for item in error.errors(include_url=False):
        location = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"]
        ).lstrip(".")
        reason = item["msg"].removeprefix("Value error, ")
        location = f"{prefix}{location}" if location else prefix.rstrip(".")
        problems.append(f"{location}: {reason}" if location else reason)
    first = error.errors(include_url=False)[0]["loc"] if error.error_count() else ()
    param = f"{prefix}{first[0]}" if first else None
    return invalid("; ".join(problems), param)


def upstream_failure(error: BaseException, *, secrets: Iterable[str] = ()) -> GatewayError:
    """A failed deliberation or outer call, as the client should see it.

    Rate limits and exhausted credits keep their status; a timeout is a 504 and anything
    else upstream a 502. The upstream text is kept (it says what to fix), keys removed.
    """
    upstream = status_code_of(error)
    if upstream in (401, 402, 403, 429):
        status = upstream
    elif (
        isinstance(error, asyncio.TimeoutError | TimeoutError) or "Timeout" in type(error).__name__
    ):
        status = 504
    else:
        status = 502
    return GatewayError(
        status,
        redact(f"the fusion backend failed: {describe_error(error)}", secrets),
        metadata={"upstream_status": upstream, "exception": type(error).__name__},
        headers=NO_RETRY,
    )
