"""The contract's result of one run, assembled from the panel's outcomes and the verdict:
answers, failures, sources, usage, and why the run failed if it did."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_fusion.contract.errors import run_failure_reason
from langchain_fusion.contract.result import (
    FailedModel,
    FailureReason,
    FusionResult,
    FusionUsage,
)
from langchain_fusion.graph.research import deduplicate_sources
from langchain_fusion.graph.state import PanelOutcome, Verdict, responses_of


def build_result(
    outcomes: Sequence[PanelOutcome], verdict: Verdict | None, min_successful: int
) -> FusionResult:
    """The result: answers, failures, sources, usage, and why the run failed if it did."""
    verdict = verdict or Verdict()
    ordered = sorted(outcomes, key=lambda outcome: outcome.index)
    failed = [
        FailedModel(model=o.model, error=o.error, status_code=o.status_code)
        for o in ordered
        if o.error is not None
    ]
    usage = FusionUsage()
    for outcome in ordered:
        usage.panel += outcome.usage
        usage.add_model(outcome.model, outcome.usage)
    for model, spent in verdict.usage_by_model.items():
        usage.judge += spent
        usage.add_model(model, spent)
    result = FusionResult(
        analysis=verdict.analysis,
        responses=responses_of(ordered),
        failed_models=failed,
        sources=deduplicate_sources(
            [source for outcome in ordered for source in outcome.sources] + verdict.sources
        ),
        usage=usage,
        degraded=bool(failed),
    )
    details = "; ".join(f"{f.model}: {f.error}" for f in failed)
    budget_stopped = any(outcome.stopped == "budget" for outcome in ordered)
    if len(result.responses) < min_successful or not result.responses:
        result.status = "error"
        result.failure_reason = _panel_failure(result, failed, budget_stopped)
        if result.responses:
            result.failure_detail = (
                f"{len(result.responses)} of {len(ordered)} panelists answered; "
                f"min_successful={min_successful}. {details}"
            )
        else:
            result.failure_detail = details
    elif verdict.failure is not None:
        result.failure_reason = verdict.failure
        result.failure_detail = verdict.error
    return result


def _panel_failure(
    result: FusionResult, failed: Sequence[FailedModel], budget_stopped: bool
) -> FailureReason:
    if budget_stopped:
        return "budget_exceeded"
    if not result.responses:
        return run_failure_reason(failed)
    return "quorum_not_met"
