"""Turning exceptions from inner calls into the contract's failure records and codes."""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import ParamSpec, TypeVar

from langchain_fusion.contract.result import FailedModel, FailureReason

P = ParamSpec("P")
R = TypeVar("R")


# Raised by our own code, never by a provider or the network: a bug must surface, not be
# recorded as a model's failure.
PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (
    TypeError,
    AttributeError,
    NameError,
    AssertionError,
    ImportError,
)


def is_programming_error(error: BaseException) -> bool:
    """Whether `error` is a bug in code (ours or a library's), not a failed call."""
    return isinstance(error, PROGRAMMING_ERRORS)


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


class DeliberationRefused(ValueError):
    """A deliberation refused before any model is called: nothing to deliberate on, or a
    worst case over the budget. The message says what to change."""


def unknown_keywords(
    owner: str,
    given: Iterable[str],
    valid: Iterable[str],
    elsewhere: Mapping[str, str] | None = None,
) -> None:
    """Refuse keyword arguments `owner` does not take, naming the closest valid one: a
    misspelt option must fail before it can fall back to an expensive default.

    `elsewhere` maps names that belong inside another argument to that argument (the
    fusion parameters of `create_fusion_graph` go in `parameters`), for the hint.
    """
    options = sorted(set(valid))
    nested = dict(elsewhere or {})
    unknown = [name for name in given if name not in options]
    if not unknown:
        return
    problems = []
    for name in unknown:
        close = difflib.get_close_matches(name, [*options, *nested], n=1, cutoff=0.6)
        hint = ""
        if close and close[0] in nested:
            hint = f"; did you mean `{close[0]}`, in `{nested[close[0]]}`?"
        elif close:
            hint = f"; did you mean `{close[0]}`?"
        problems.append(f"`{name}`{hint}")
    raise TypeError(f"{owner} got unexpected keyword argument(s): {', '.join(problems)}")


def refuse_unknown_keywords(
    elsewhere: Mapping[str, str] | None = None,
    also: Iterable[str] = (),
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator: the function refuses unknown keyword arguments with the closest valid
    name (or the argument they belong in, from `elsewhere`). `also` names the keywords its
    `**options` take."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        named = inspect.signature(func).parameters.values()
        valid = [
            p.name for p in named if p.kind is not p.VAR_KEYWORD and p.kind is not p.VAR_POSITIONAL
        ]
        valid += also

        @functools.wraps(func)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            unknown_keywords(f"{func.__name__}()", kwargs, valid, elsewhere)
            return func(*args, **kwargs)

        return checked

    return decorate
