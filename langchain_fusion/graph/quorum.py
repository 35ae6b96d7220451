"""After the panel: is there a quorum to judge? Then the run's conclusion.

Quorum is its own decision in the graph: with fewer answers than `min_successful` the judge
is never asked, and a failed run makes no other call. The result itself is assembled in
`graph/result.py`.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END
from langgraph.runtime import get_runtime

from langchain_fusion.contract import events
from langchain_fusion.graph.cascade_report import with_cascade
from langchain_fusion.graph.context import FusionContext
from langchain_fusion.graph.judge import JUDGE
from langchain_fusion.graph.progress import Progress
from langchain_fusion.graph.result import build_result
from langchain_fusion.graph.state import FusionState
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
    there is an analysis, with the analyst's `usage`) and `completed`.
    """
    runtime = get_runtime(FusionContext)
    minimum = runtime.context.setup.limits.min_successful
    result = build_result(state.panel_outcomes, state.verdict, minimum)
    result = with_cascade(result, state, runtime.context.setup)
    progress = Progress(runtime.stream_writer, stream_tokens=runtime.context.stream_tokens)
    if result.analysis is not None:
        progress.emit(
            events.ANALYSIS_COMPLETED,
            analysis=result.analysis.model_dump(mode="json"),
            usage=result.usage.judge.model_dump(),  # the analyst's calls, research included
        )
    progress.emit(events.COMPLETED, result=result.model_dump(mode="json"))
    return {"result": result}


def synthesis_or_end(state: FusionState) -> str:
    """The outer model writes an answer only from a usable result, in the standalone form."""
    setup = get_runtime(FusionContext).context.setup
    ok = state.result is not None and state.result.status == "ok"
    return SYNTHESIS if setup.synthesizer is not None and ok else END
