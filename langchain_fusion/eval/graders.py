"""Graders: is an answer right? Numeric, exact, normalised, multiple-choice, regex; the code
and LLM graders live in their own modules and are built by `make_grader`.

A grader that can *extract* a short answer (a number, a letter, a normalised phrase) also
gives the key that the majority-vote arm counts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from langchain_fusion import OpenAICompatibleBackend, TokenUsage
from langchain_fusion.contract.answers import final_line, last_number, normalise, parse_number
from langchain_fusion.eval.items import EvalItem


@dataclass(frozen=True)
class Grade:
    """A grader's verdict; `usage` is what grading itself spent (the LLM grader)."""

    correct: bool
    detail: str = ""
    usage: TokenUsage = field(default_factory=TokenUsage)


@runtime_checkable
class Grader(Protocol):
    """Decides whether an answer matches an item's reference."""

    name: str

    def key(self, answer: str) -> str | None:
        """The extracted short answer, for majority voting; None when there is none (or
        when this grader cannot extract one: see `votable`)."""
        ...

    @property
    def votable(self) -> bool:
        """Whether answers can be put to a majority vote under this grader."""
        ...

    async def grade(self, item: EvalItem, answer: str) -> Grade:
        """The verdict on `answer` for `item`."""
        ...


# --- numbers --------------------------------------------------------------------------


def _format_number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


class NumericGrader:
    """Right when the last number in the answer equals the reference (relative 1e-6)."""

    name = "numeric"
    votable = True

    def key(self, answer: str) -> str | None:
        value = last_number(answer)
        return None if value is None else _format_number(value)

    async def grade(self, item: EvalItem, answer: str) -> Grade:
        expected = parse_number(item.reference)
        if expected is None:
            return Grade(False, f"reference {item.reference!r} is not a number")
        got = last_number(answer)
        if got is None:
            return Grade(False, "no number in the answer")
        ok = abs(got - expected) <= 1e-6 * max(1.0, abs(expected))
        return Grade(ok, f"answer {_format_number(got)}, reference {_format_number(expected)}")


# --- text -------------------------------------------------------------------------------


class ExactGrader:
    """Right when the answer, stripped of surrounding whitespace, equals the reference."""

    name = "exact"
    votable = True

    def key(self, answer: str) -> str | None:
        return answer.strip() or None

    async def grade(self, item: EvalItem, answer: str) -> Grade:
        ok = answer.strip() == str(item.reference).strip()
        return Grade(ok, "" if ok else "not an exact match")


class NormalisedGrader:
    """Right when the normalised answer, or its normalised last line (without an
    `Answer:` prefix), equals the normalised reference."""

    name = "normalised"
    votable = True

    def key(self, answer: str) -> str | None:
        return normalise(final_line(answer)) or None

    async def grade(self, item: EvalItem, answer: str) -> Grade:
        expected = normalise(item.reference)
        ok = expected in (normalise(answer), normalise(final_line(answer)))
        return Grade(ok, "" if ok else f"reference {expected!r} not matched")


# --- multiple choice --------------------------------------------------------------------

_STATED_CHOICE = re.compile(r"answer\s*(?:is|:)?\s*(?:option\s*)?\(?\*{0,2}([A-J])\b", re.I)
_PAREN_CHOICE = re.compile(r"\(([A-J])\)", re.I)
_BARE_CHOICE = re.compile(r"(?<![\w'’])([A-J])(?![\w'’])")


def choice_letter(text: str) -> str | None:
    """The letter chosen: `answer is (C)` / `Answer: C`, else the last `(C)`, else the
    last capital A to J standing alone."""
    for pattern in (_STATED_CHOICE, _PAREN_CHOICE, _BARE_CHOICE):
        found = pattern.findall(text)
        if found:
            return str(found[-1]).upper()
    return None


class ChoiceGrader:
    """Right when the letter the answer chooses is the reference's letter."""

    name = "choice"
    votable = True

    def key(self, answer: str) -> str | None:
        return choice_letter(answer)

    async def grade(self, item: EvalItem, answer: str) -> Grade:
        reference = str(item.reference).strip().upper()
        expected = choice_letter(reference) or reference
        got = choice_letter(answer)
        if got is None:
            return Grade(False, "no choice letter in the answer")
        return Grade(got == expected, f"answer {got}, reference {expected}")


# --- regex ------------------------------------------------------------------------------


class RegexGrader:
    """Right when the reference, a regular expression (or the item's `pattern` field),
    is found in the answer (`re.search`; write `(?i)` for case-insensitive)."""

    name = "regex"
    votable = False

    def key(self, answer: str) -> str | None:
        return None

    async def grade(self, item: EvalItem, answer: str) -> Grade:
        pattern = item.fields.get("pattern", item.reference)
        try:
            ok = re.search(str(pattern), answer) is not None
        except re.error as error:
            return Grade(False, f"bad pattern {pattern!r}: {error}")
        return Grade(ok, "" if ok else f"pattern {pattern!r} not found")


# --- choosing ---------------------------------------------------------------------------

GRADERS = ("numeric", "exact", "normalised", "choice", "regex", "code", "llm")
_ALIASES = {"normalized": "normalised", "multiple-choice": "choice", "mc": "choice"}


class GraderError(ValueError):
    """An unknown grader, or one missing what it needs."""


def canonical_grader(name: str) -> str:
    """The grader's canonical name; `GraderError` for an unknown one."""
    canonical = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if canonical not in GRADERS:
        raise GraderError(f"unknown grader {name!r}; choose one of: {', '.join(GRADERS)}")
    return canonical


def default_grader(items: Sequence[EvalItem]) -> str:
    """`code` for HumanEval items; `numeric` when every reference is a number; else
    `normalised`."""
    if items and all("entry_point" in item.fields and "test" in item.fields for item in items):
        return "code"
    if items and all(parse_number(item.reference) is not None for item in items):
        return "numeric"
    return "normalised"


def make_grader(
    name: str,
    *,
    llm_model: str | None = None,
    backend: OpenAICompatibleBackend | None = None,
    code_timeout: float = 10.0,
    code_concurrency: int = 2,
) -> Grader:
    """Build a grader by name; the LLM grader needs `llm_model` (run on `backend`)."""
    canonical = canonical_grader(name)
    if canonical == "numeric":
        return NumericGrader()
    if canonical == "exact":
        return ExactGrader()
    if canonical == "normalised":
        return NormalisedGrader()
    if canonical == "choice":
        return ChoiceGrader()
    if canonical == "regex":
        return RegexGrader()
    if canonical == "code":
        from langchain_fusion.eval.code_grader import CodeGrader

        return CodeGrader(timeout=code_timeout, concurrency=code_concurrency)
    if llm_model is None:
        raise GraderError("the llm grader needs a model: --grader-model SLUG")
    from langchain_fusion.eval.llm_grader import LLMGrader

    return LLMGrader(llm_model, backend=backend)
