"""What a cascade did, written into the result: `result.cascade`, with each stage's usage.

The judge's first analysis, when the cascade escalated, was paid for: its usage is added
to the result's judge usage (and per model), so the totals are what the run cost.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_fusion.contract.result import CascadeReport, FusionResult, FusionUsage
from langchain_fusion.graph.research import deduplicate_sources
from langchain_fusion.graph.setup import FusionSetup
from langchain_fusion.graph.state import FusionState, PanelOutcome, Verdict


def with_cascade(result: FusionResult, state: FusionState, setup: FusionSetup) -> FusionResult:
    """`result` with its cascade record (unchanged when the run had no cascade)."""
    progress, cascade = state.cascade, setup.cascade
    if progress is None or cascade is None:
        return result
    ordered = sorted(state.panel_outcomes, key=lambda outcome: outcome.index)
    first = [o for o in ordered if o.index < cascade.first]
    rest = [o for o in ordered if o.index >= cascade.first and progress.escalated]
    first_verdict = progress.first_verdict if progress.escalated else state.verdict
    stages = {"first": stage_usage(first, first_verdict)}
    if progress.escalated:
        stages["escalation"] = stage_usage(rest, state.verdict)
        if first_verdict is not None:  # the first analysis was paid for too
            for model, spent in first_verdict.usage_by_model.items():
                result.usage.judge += spent
                result.usage.add_model(model, spent)
            result.sources = deduplicate_sources([*result.sources, *first_verdict.sources])
    result.cascade = CascadeReport(
        escalated=progress.escalated,
        first=[seat.label for seat in setup.first_seats],
        rule=cascade.rule_name,
        reason=progress.reason,
        stages=stages,
    )
    return result


def stage_usage(outcomes: Sequence[PanelOutcome], verdict: Verdict | None) -> FusionUsage:
    """The panel and judge usage of one stage."""
    usage = FusionUsage()
    for outcome in outcomes:
        usage.panel += outcome.usage
        usage.add_model(outcome.model, outcome.usage)
    for model, spent in (verdict.usage_by_model if verdict else {}).items():
        usage.judge += spent
        usage.add_model(model, spent)
    return usage
