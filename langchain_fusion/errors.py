"""Turning exceptions from inner calls into the contract's failure records and codes."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_fusion.result import FailedModel, FailureReason


def status_code_of(error: BaseException) -> int | None:
    """The upstream HTTP status behind `error`, when there was one."""
    code = getattr(error, "status_code", None)  # openai.APIStatusError and friends
    if isinstance(code, int):
        return code
    response = getattr(error, "response", None)  # httpx.HTTPStatusError
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def describe_error(error: BaseException) -> str:
    """The real error text (the upstream body included), never a generic message."""
    text = str(error).strip()
    name = type(error).__name__
    return f"{name}: {text}" if text else name


def run_failure_reason(failed: Sequence[FailedModel]) -> FailureReason:
    """Why a run in which no panelist answered failed.

    A single cause shared by every panelist gets its own code (402 insufficient credits,
    429 rate limited, 404 unknown model); anything else is `all_panels_failed`.
    """
    codes = {failure.status_code for failure in failed}
    if codes == {402}:
        return "insufficient_credits"
    if codes == {429}:
        return "rate_limited"
    if codes == {404}:
        return "invalid_model"
    return "all_panels_failed"
