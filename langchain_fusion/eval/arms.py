"""The arms of an evaluation: what answers each item, and how.

- `single:<model>`: one panelist alone (same settings, research tools and limits as in the
  panel).
- `fusion`: the whole pipeline, panel → judge → final answer, with the judge's default
  (named or anonymised, as the pipeline defaults).
- `fusion:named-judge` / `fusion:anonymised-judge`: the same, with the judge shown model
  names or `Response A`, `Response B`, ... in a seeded shuffle (`judge_variants=True`).
- `self-fusion:<model>`: the pipeline with every seat held by one model (the panel's size).
- `vote`: every panelist answers (its own calls, not the single arms' answers) and the most
  common extracted answer wins; for graders that extract a short answer only.
- `cascade`: the pipeline with a cascade (`--cascade-first k`): the first k seats answer,
  the rest only when those disagree; its records say whether each item escalated.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool

from langchain_fusion import FusionParameters, FusionResult, OpenAICompatibleBackend, TokenUsage
from langchain_fusion.eval import _pipeline
from langchain_fusion.eval.graders import Grader

ArmKind = Literal["single", "fusion", "self-fusion", "vote", "cascade"]
ARM_KINDS: tuple[str, ...] = ("single", "fusion", "self-fusion", "vote", "cascade")
CASCADE_FIRST = 2
"""The cascade arm's first seats when `--arms cascade` names no `--cascade-first`."""
JUDGED_KINDS = ("fusion", "self-fusion", "cascade")


@dataclass(frozen=True)
class ArmSpec:
    """What an arm runs. Its fingerprint decides whether stored results still apply."""

    name: str
    kind: ArmKind
    panel: tuple[str, ...]
    judge: str | None = None
    anonymize_judge: bool | None = None
    """None: the pipeline's default; True/False: passed to `create_fusion_graph`."""
    cascade: tuple[tuple[str, Any], ...] | None = None
    """The cascade arm's `Cascade` fields (`first`, `rule`)."""

    def fingerprint(self, setup: Mapping[str, Any]) -> str:
        """A hash of the arm and the settings that change its answers."""
        arm = asdict(self)
        if arm["cascade"] is None:  # arms stored before cascades existed still match
            del arm["cascade"]
        text = json.dumps([arm, dict(setup)], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def models(self) -> tuple[str, ...]:
        """Every model this arm calls (judge included)."""
        return self.panel + ((self.judge,) if self.judge else ())


@dataclass
class ArmAnswer:
    """An arm's answer to one item, with what it cost."""

    text: str
    error: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)
    by_model: dict[str, TokenUsage] = field(default_factory=dict)
    failure_reason: str | None = None
    votes: list[dict[str, Any]] | None = None
    escalated: bool | None = None
    """The cascade arm: whether the whole panel was asked."""


class ArmPlanError(ValueError):
    """The arms asked for cannot be run as asked."""


def plan_arms(
    *,
    models: Sequence[str],
    judge: str | None,
    kinds: Sequence[str] | None,
    self_fusion: str | None,
    judge_variants: bool,
    votable: bool,
    cascade_first: int | None = None,
    cascade_rule: str | None = None,
) -> list[ArmSpec]:
    """The arms to run, in report order. `kinds=None`: every arm that applies (the cascade
    when `cascade_first` is given)."""
    if not models:
        raise ArmPlanError("no models: give the panel, e.g. --models a,b")
    wanted = list(kinds) if kinds is not None else list(ARM_KINDS)
    if kinds is None and cascade_first is None:
        wanted.remove("cascade")
    unknown = [kind for kind in wanted if kind not in ARM_KINDS]
    if unknown:
        raise ArmPlanError(f"unknown arm(s) {unknown}; choose from {', '.join(ARM_KINDS)}")
    needs_judge = set(JUDGED_KINDS) & set(wanted)
    if needs_judge and not judge:
        raise ArmPlanError("fusion arms need a judge: --judge SLUG")
    if "vote" in wanted and not votable:
        if kinds is not None:
            raise ArmPlanError(
                "the vote arm needs a grader that extracts a short answer "
                "(numeric, exact, normalised, choice)"
            )
        wanted.remove("vote")
    panel = tuple(models)
    arms: list[ArmSpec] = []
    if "single" in wanted:
        arms += [ArmSpec(f"single:{model}", "single", (model,)) for model in dict.fromkeys(panel)]
    if "fusion" in wanted:
        if judge_variants:
            arms.append(ArmSpec("fusion:named-judge", "fusion", panel, judge, False))
            arms.append(ArmSpec("fusion:anonymised-judge", "fusion", panel, judge, True))
        else:
            arms.append(ArmSpec("fusion", "fusion", panel, judge))
    if "self-fusion" in wanted:
        model = self_fusion or panel[0]
        seats = (model,) * len(panel)
        arms.append(ArmSpec(f"self-fusion:{model}", "self-fusion", seats, judge))
    if "vote" in wanted:
        arms.append(ArmSpec("vote", "vote", panel))
    if "cascade" in wanted:
        arms.append(_cascade_arm(panel, judge, cascade_first or CASCADE_FIRST, cascade_rule))
    return arms


def _cascade_arm(
    panel: tuple[str, ...], judge: str | None, first: int, rule: str | None
) -> ArmSpec:
    """The cascade arm, checked as the pipeline checks a cascade (before any call)."""
    from langchain_fusion import Cascade, FusionParameterError
    from langchain_fusion.contract.cascade import cascade_from, check_cascade

    fields: dict[str, Any] = {"first": first, **({"rule": rule} if rule else {})}
    try:
        cascade = cascade_from(fields)
        assert isinstance(cascade, Cascade)
        check_cascade(cascade, len(panel))
    except FusionParameterError as error:
        raise ArmPlanError(
            "the cascade arm: " + "; ".join(error.problems) + " (--cascade-first, --models)"
        ) from None
    name = f"cascade:{first}" + (f":{rule}" if rule else "")
    return ArmSpec(name, "cascade", panel, judge, cascade=tuple(sorted(fields.items())))


class ArmRunner:
    """Runs one arm on one item at a time; models and graphs are built once."""

    def __init__(
        self,
        spec: ArmSpec,
        *,
        parameters: FusionParameters,
        backend: OpenAICompatibleBackend,
        research_tools: Sequence[BaseTool] | None,
        limits: Mapping[str, Any] | None,
        grader: Grader,
        seed: int,
        analysis_limits: Any = None,
    ) -> None:
        self.spec = spec
        self.grader = grader
        self.seed = seed
        self._graph_settings: dict[str, Any] = {
            "parameters": parameters,
            "backend": backend,
            "research_tools": research_tools,
            "limits": limits,
        }
        self._seats: _pipeline.PanelSeats | None = None
        self._graph: Any = None
        if spec.kind in ("single", "vote"):
            self._seats = _pipeline.PanelSeats(spec.panel, **self._graph_settings)
        else:
            assert spec.judge is not None
            # An anonymised judge's shuffle follows the run's seed and each item's
            # conversation: one graph serves every item.
            self._graph = _pipeline.fusion_graph(
                panel=spec.panel,
                judge=spec.judge,
                anonymize_judge=spec.anonymize_judge,
                judge_shuffle_seed=seed if spec.anonymize_judge else None,
                analysis_limits=analysis_limits,
                cascade=dict(spec.cascade) if spec.cascade else None,
                **self._graph_settings,
            )

    async def answer(
        self, item_id: str, messages: Sequence[BaseMessage], config: RunnableConfig
    ) -> ArmAnswer:
        """The arm's answer to one conversation; failures are answers with an `error`."""
        if self.spec.kind == "single":
            assert self._seats is not None
            single = await self._seats.answer(0, messages, config)
            return ArmAnswer(
                single.content or "",
                error=single.error,
                usage=single.usage,
                by_model={self.spec.panel[0]: single.usage},
            )
        if self.spec.kind == "vote":
            return await self._vote(messages, config)
        out = await self._graph.ainvoke({"messages": list(messages)}, config)
        return _fusion_answer(out)

    async def _vote(self, messages: Sequence[BaseMessage], config: RunnableConfig) -> ArmAnswer:
        seats = self._seats
        assert seats is not None
        answers = await asyncio.gather(
            *(seats.answer(seat, messages, config) for seat in range(len(self.spec.panel)))
        )
        usage = TokenUsage()
        by_model: dict[str, TokenUsage] = {}
        votes: list[dict[str, Any]] = []
        for model, single in zip(self.spec.panel, answers, strict=True):
            usage += single.usage
            by_model[model] = by_model.get(model, TokenUsage()) + single.usage
            key = self.grader.key(single.content) if single.content else None
            votes.append({"model": model, "key": key, "error": single.error})
        counts = Counter(vote["key"] for vote in votes if vote["key"] is not None)
        if not counts:
            return ArmAnswer(
                "",
                error="no panelist gave an answer to vote on",
                usage=usage,
                by_model=by_model,
                votes=votes,
            )
        top = max(counts.values())
        # A tie goes to the answer of the earliest seat among the tied.
        winner = next(v for v in votes if v["key"] is not None and counts[v["key"]] == top)
        text = answers[votes.index(winner)].content or ""
        return ArmAnswer(text, usage=usage, by_model=by_model, votes=votes)


def _fusion_answer(out: Mapping[str, Any]) -> ArmAnswer:
    result = out.get("result")
    if not isinstance(result, FusionResult):
        return ArmAnswer("", error="the pipeline returned no result")
    usage = result.usage
    answer = out.get("answer")
    error = None
    if not answer:
        error = out.get("synthesis_error") or result.failure_detail or "no final answer"
        if result.failure_reason:
            error = f"{result.failure_reason}: {error}"
    return ArmAnswer(
        answer or "",
        error=error,
        usage=usage.total,
        by_model=dict(usage.by_model),
        failure_reason=result.failure_reason,
        escalated=result.cascade.escalated if result.cascade is not None else None,
    )
