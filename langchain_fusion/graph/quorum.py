"""After the panel: is there a quorum to judge? Then the contract's result, assembled.

Quorum is its own decision in the graph: with fewer answers than `min_successful` the judge
is never asked, and a failed run makes no other call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.graph import END
from langgraph.runtime import get_runtime

from langchain_fusion.contract import events
from langchain_fusion.contract.errors import run_failure_reason
from langchain_fusion.contract.result import (
    FailedModel,
    FailureReason,
    FusionResult,
    FusionUsage,
)
from langchain_fusion.graph.cascade_report import with_cascade
from langchain_fusion.graph.context import FusionContext
from langchain_fusion.graph.judge import JUDGE
from langchain_fusion.graph.progress import Progress
from langchain_fusion.graph.research import deduplicate_sources
from langchain_fusion.graph.state import FusionState, PanelOutcome, Verdict, responses_of
from langchain_fusion.graph.synthesis import SYNTHESIS

QUORUM = "quorum"
CONCLUDE = "conclude"


def quorum(state: FusionState) -> dict[str, Any]:
    """The panel is done (every panelist answered, failed or was left behind)."""
    del state  # the decision is the edge's: `quorum_met`
    return {}


def quorum_met(state: FusionState) -> str:
    """To the judge when at least `min_successful` panelists answered; else to the result."""
    minimum = get_runtime(FusionContext).context.setup.limits.min_successful
    answered = sum(outcome.content is not None for outcome in state.panel_outcomes)
    return JUDGE if answered >= minimum else CONCLUDE


def conclude(state: FusionState) -> dict[str, Any]:
    """Assemble the contract's result from the panel's outcomes and the judge's verdict.

    Reads `panel_outcomes` and `verdict`. Writes `result`. Emits `analysis.completed` (when
    there is an analysis) and `completed`.
    """
    runtime = get_runtime(FusionContext)
    minimum = runtime.context.setup.limits.min_successful
    result = build_result(state.panel_outcomes, state.verdict, minimum)
    result = with_cascade(result, state, runtime.context.setup)
    progress = Progress(runtime.stream_writer, listening=runtime.context.listening)
    if result.analysis is not None:
        progress.emit(events.ANALYSIS_COMPLETED, analysis=result.analysis.model_dump(mode="json"))
    progress.emit(events.COMPLETED, result=result.model_dump(mode="json"))
    return {"result": result}


def synthesis_or_end(state: FusionState) -> str:
    """The outer model writes an answer only from a usable result, in the standalone form."""
    setup = get_runtime(FusionContext).context.setup
    ok = state.result is not None and state.result.status == "ok"
    return SYNTHESIS if setup.synthesizer is not None and ok else END


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
