"""Turning exceptions from inner calls into the contract's failure records and codes."""

from __future__ import annotations

import re
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
    if failed and all(_names_a_bad_model(failure) for failure in failed):
        return "invalid_model"
    return "all_panels_failed"


# OpenRouter answers an unknown slug with 400 "... is not a valid model ID"; others 404.
_BAD_MODEL = re.compile(
    r"model.{0,80}(not a valid|not found|does not exist|unknown|invalid)"
    r"|(invalid|unknown|no such) model",
    re.IGNORECASE,
)


def _names_a_bad_model(failure: FailedModel) -> bool:
    if failure.status_code == 404:
        return True
    return failure.status_code == 400 and bool(_BAD_MODEL.search(failure.error))
