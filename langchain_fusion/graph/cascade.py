"""The cascade's nodes and edges: the first seats, and the rest only when they disagree.

```
start ─Send×k─▶ panelist ─▶ quorum ─first─▶ judge ─▶ agreement ─agreed───▶ conclude
                   ▲           │  (a matching rule, or too few answers: ─▶ agreement)
                   │           │                         └disagreed─▶ escalate ─not asked─▶ conclude
                   │           └escalation: met ─▶ judge (every answer) ─▶ conclude
                   └──────────────── Send×(N−k) ───────────────────────────┘
```

The panelist, quorum and judge nodes are the same as without a cascade; a `stage` in the
state says which stage they serve. A matching rule (`exact`, `normalised`, `numeric`) goes
from the quorum straight to the agreement check, with no judge call. A first stage without
enough answers escalates (the rest may still answer) rather than failing. The whole run
keeps one clock and ledger: the deadline and the budget span both stages; the quorum and
the straggler grace apply to each stage (the grace counts from the stage's own answers).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from langgraph.graph import StateGraph
from langgraph.runtime import get_runtime
from langgraph.types import Send

from langchain_fusion.contract import events
from langchain_fusion.contract.cascade import MIN_FIRST, Agreement
from langchain_fusion.graph.context import FusionContext
from langchain_fusion.graph.judge import JUDGE
from langchain_fusion.graph.panel import PANELIST
from langchain_fusion.graph.progress import Progress
from langchain_fusion.graph.quorum import CONCLUDE, QUORUM, quorum_met
from langchain_fusion.graph.state import (
    CascadeState,
    FusionState,
    PanelOutcome,
    PanelTask,
    responses_of,
)

AGREEMENT = "agreement"
ESCALATE = "escalate"


def add_cascade(builder: StateGraph[Any, Any, Any, Any]) -> None:
    """Wire the cascade after the quorum (the panel's fan-out and fan-in stay as they are)."""
    builder.add_node(AGREEMENT, agreement)
    builder.add_node(ESCALATE, escalate)
    builder.add_conditional_edges(QUORUM, after_quorum, [JUDGE, AGREEMENT, CONCLUDE])
    builder.add_conditional_edges(JUDGE, after_judge, [AGREEMENT, CONCLUDE])
    builder.add_conditional_edges(AGREEMENT, agreed_or_escalate, [CONCLUDE, ESCALATE])
    builder.add_conditional_edges(ESCALATE, dispatch_rest, [PANELIST, CONCLUDE])


def after_quorum(state: FusionState) -> str:
    """First stage: to the judge when its rule reads an analysis and the first seats have
    enough answers; else to the agreement check. Escalation: the quorum as usual."""
    if _stage(state).stage == "escalation":
        return quorum_met(state)
    setup = get_runtime(FusionContext).context.setup
    assert setup.cascade is not None
    if setup.cascade.asks_judge_first and _answered(state) >= _needed(setup.limits.min_successful):
        return JUDGE
    return AGREEMENT


def after_judge(state: FusionState) -> str:
    """The judge's first analysis goes to the agreement check; its second to the result."""
    return AGREEMENT if _stage(state).stage == "first" else CONCLUDE


def agreement(state: FusionState) -> dict[str, Any]:
    """Do the first seats agree under the cascade's rule?

    Reads `panel_outcomes` and `verdict`. Writes `cascade` (agreed, and why).
    """
    setup = get_runtime(FusionContext).context.setup
    cascade = setup.cascade
    assert cascade is not None
    answers = responses_of(state.panel_outcomes)
    needed = _needed(setup.limits.min_successful)
    if len(answers) < needed:
        found = Agreement(
            False, f"{len(answers)} of {cascade.first} first seats answered; {needed} needed"
        )
    else:
        found = cascade.agreement(answers, state.verdict.analysis if state.verdict else None)
    return {"cascade": replace(_stage(state), agreed=found.agreed, reason=found.reason)}


def agreed_or_escalate(state: FusionState) -> str:
    return CONCLUDE if _stage(state).agreed else ESCALATE


def escalate(state: FusionState) -> dict[str, Any]:
    """Bring in the remaining seats, unless the budget is spent or the deadline passed
    (then they are recorded as not asked, and the result is the first stage's).

    Writes `cascade` (the stage), `verdict` (cleared: the judge will see every answer;
    the first analysis is kept in `cascade`). Emits `cascade.escalated` and one
    `panel.added` per remaining seat.
    """
    context = get_runtime(FusionContext)
    setup, clock = context.context.setup, context.context.clock
    assert setup.cascade is not None
    stage, rest = _stage(state), setup.panel[setup.cascade.first :]
    stopped, blocked = "budget", clock.budget_spent()
    if blocked is None and clock.past_deadline():
        stopped = "deadline"
        blocked = f"the deliberation deadline of {setup.limits.deadline:g} s passed"
    if blocked is not None:
        not_asked = [
            PanelOutcome(seat.index, seat.label, error=f"not asked: {blocked}", stopped=stopped)
            for seat in rest
        ]
        reason = f"{stage.reason}; the remaining seats were not asked: {blocked}"
        return {"panel_outcomes": not_asked, "cascade": replace(stage, reason=reason)}
    progress = Progress(context.stream_writer, listening=context.context.listening)
    progress.emit(
        events.CASCADE_ESCALATED,
        first=[seat.label for seat in setup.first_seats],
        rest=[seat.label for seat in rest],
        rule=setup.cascade.rule_name,
        reason=stage.reason,
    )
    for seat in rest:
        progress.emit(events.PANEL_ADDED, model=seat.label, panel_index=seat.index)
    clock.start_stage()
    escalated = replace(stage, stage="escalation", escalated=True, first_verdict=state.verdict)
    return {"cascade": escalated, "verdict": None}


def dispatch_rest(state: FusionState) -> list[Send] | str:
    """Fan out to the remaining seats, each with the whole conversation; or to the result
    when they could not be asked."""
    if not _stage(state).escalated:
        return CONCLUDE
    setup = get_runtime(FusionContext).context.setup
    assert setup.cascade is not None
    return [
        Send(PANELIST, PanelTask(index=seat.index, messages=list(state.messages)))
        for seat in setup.panel[setup.cascade.first :]
    ]


def _stage(state: FusionState) -> CascadeState:
    assert state.cascade is not None, "a cascade node ran in a run without a cascade"
    return state.cascade


def _answered(state: FusionState) -> int:
    return sum(outcome.content is not None for outcome in state.panel_outcomes)


def _needed(min_successful: int) -> int:
    """Answers the first stage needs to be compared: the quorum, and two at least."""
    return max(min_successful, MIN_FIRST)
