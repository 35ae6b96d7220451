"""The cascade: ask the first seats, and the whole panel only when they disagree.

Our extension of the contract (the hosted service has no cascade). `Cascade` is what a
user sets (`cascade={"first": 2}` on `create_fusion_graph`, `FusionTool`, `ChatFusion`,
or `parameters.cascade` on the gateway); `CascadeReport` is what the result says happened
(`result.cascade`, defined with the result). The graph's side is `graph/cascade.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from langchain_fusion.contract.answers import final_line, last_number, normalise, numbers_agree
from langchain_fusion.contract.parameters import MAX_PANEL, FusionParameterError
from langchain_fusion.contract.result import FusionAnalysis, PanelResponse

RuleName = Literal["analysis", "exact", "normalised", "numeric"]
RULES: tuple[str, ...] = ("analysis", "exact", "normalised", "numeric")
AgreementRule = Callable[[Sequence[PanelResponse], FusionAnalysis | None], bool]
"""Your own rule: given the first seats' answers and the judge's analysis of them (None
when the judge was not asked, or failed), whether they agree."""

MIN_FIRST = 2
"""Agreement needs two answers at least: one answer agrees with itself."""


class Cascade(BaseModel):
    """Run the first `first` seats of the panel (put the cheap ones first); stop there when
    they agree under `rule`; otherwise run the remaining seats and judge every answer.

    Rules: `analysis` (the default) asks the judge about the first answers and calls them
    agreed when its analysis has no contradictions and no partial coverage; `exact`,
    `normalised` (lower case, no punctuation or articles, the last line) and `numeric`
    (the last number, within `tolerance`) compare the answers without a judge call; a
    callable `(answers, analysis) -> bool` decides itself (the judge is asked first unless
    `judge_first=False`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    first: int = Field(ge=MIN_FIRST, le=MAX_PANEL - 1, strict=True)
    """How many seats answer first (the panel's first seats, in order)."""
    rule: RuleName | AgreementRule = "analysis"
    tolerance: float = Field(default=1e-6, ge=0)
    """`numeric`: the largest difference, relative to the larger value (absolute below 1)."""
    judge_first: bool | None = None
    """Ask the judge about the first answers: default yes for `analysis` and callables, no
    for the matching rules (which need no analysis)."""

    @model_validator(mode="after")
    def _consistent(self) -> Cascade:
        if self.rule == "analysis" and self.judge_first is False:
            raise ValueError(
                "rule 'analysis' reads the judge's analysis: judge_first cannot be false"
            )
        return self

    @property
    def rule_name(self) -> str:
        """`analysis`, `exact`, `normalised`, `numeric`, or `callable:<name>`."""
        if isinstance(self.rule, str):
            return self.rule
        return f"callable:{getattr(self.rule, '__name__', type(self.rule).__name__)}"

    @property
    def asks_judge_first(self) -> bool:
        if self.judge_first is not None:
            return self.judge_first
        return self.rule == "analysis" or not isinstance(self.rule, str)

    def agreement(
        self, answers: Sequence[PanelResponse], analysis: FusionAnalysis | None
    ) -> Agreement:
        """Whether the first seats' answers agree, and why (or why not)."""
        if self.rule == "analysis":
            return _analysis_agrees(analysis)
        if self.rule == "exact":
            return _match([a.content.strip() for a in answers], "the answers")
        if self.rule == "normalised":
            return _match(
                [normalise(final_line(a.content)) for a in answers], "the normalised answers"
            )
        if self.rule == "numeric":
            return _numbers_agree(answers, self.tolerance)
        assert callable(self.rule)
        agreed = bool(self.rule(list(answers), analysis))
        verdict = "agree" if agreed else "disagree"
        return Agreement(agreed, f"{self.rule_name} says the first answers {verdict}")


@dataclass(frozen=True)
class Agreement:
    agreed: bool
    reason: str


def cascade_from(value: Cascade | Mapping[str, Any] | None) -> Cascade | None:
    """`Cascade` from itself or its fields; bad values raise `FusionParameterError`."""
    if value is None or isinstance(value, Cascade):
        return value
    if not isinstance(value, Mapping):
        raise FusionParameterError(
            [f"cascade: expected an object such as {{'first': 2}}, got {type(value).__name__}"]
        )
    try:
        return Cascade.model_validate(dict(value))
    except ValidationError as error:
        raise FusionParameterError(
            [_describe(e) for e in error.errors(include_url=False)]
        ) from None


def describe_cascade(cascade: Cascade) -> dict[str, Any]:
    """The cascade as JSON, for traces and cache keys (a callable rule by its name)."""
    return {
        "first": cascade.first,
        "rule": cascade.rule_name,
        "tolerance": cascade.tolerance,
        "judge_first": cascade.asks_judge_first,
    }


def check_cascade(cascade: Cascade, seats: int) -> None:
    """A cascade on a panel of `seats` models must leave seats to escalate to."""
    if seats <= MIN_FIRST:
        raise FusionParameterError(
            [
                f"cascade: the panel has {seats} models; a cascade needs {MIN_FIRST + 1} at "
                f"least ({MIN_FIRST} first seats that can agree, and one to escalate to)"
            ]
        )
    if cascade.first >= seats:
        raise FusionParameterError(
            [
                f"cascade.first = {cascade.first}: the panel has {seats} models, so no seat "
                f"would be left to escalate to; allowed: {MIN_FIRST} to {seats - 1}"
            ]
        )


def _describe(error: Any) -> str:
    path = ".".join(["cascade", *map(str, error["loc"])])
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown field; allowed fields: {', '.join(Cascade.model_fields)}"
    if error["loc"] and error["loc"][0] == "rule":
        return f"{path}: one of {', '.join(RULES)}, or a callable (answers, analysis) -> bool"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{path}: {message}"


def _analysis_agrees(analysis: FusionAnalysis | None) -> Agreement:
    if analysis is None:
        return Agreement(False, "the judge gave no analysis of the first answers")
    found = []
    if analysis.contradictions:
        found.append(f"{len(analysis.contradictions)} contradiction(s)")
    if analysis.partial_coverage:
        found.append(f"{len(analysis.partial_coverage)} point(s) of partial coverage")
    if found:
        return Agreement(False, "the judge found " + " and ".join(found))
    return Agreement(True, "the judge found no contradictions and no partial coverage")


def _match(keys: Sequence[str], what: str) -> Agreement:
    if not all(keys):
        return Agreement(False, f"{what}: one of them is empty")
    if len(set(keys)) == 1:
        return Agreement(True, f"{what} match")
    return Agreement(False, f"{what} differ ({len(set(keys))} distinct)")


def _numbers_agree(answers: Sequence[PanelResponse], tolerance: float) -> Agreement:
    values = [last_number(a.content) for a in answers]
    if any(v is None for v in values):
        missing = [a.model for a, v in zip(answers, values, strict=True) if v is None]
        return Agreement(False, f"no number in the answer of {', '.join(missing)}")
    numbers = [v for v in values if v is not None]
    low, high = min(numbers), max(numbers)
    if numbers_agree(low, high, tolerance):
        return Agreement(True, f"the numbers agree within {tolerance:g} ({low:g} to {high:g})")
    return Agreement(False, f"the numbers differ ({low:g} to {high:g}, tolerance {tolerance:g})")
