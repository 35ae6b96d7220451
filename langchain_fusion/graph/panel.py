"""The panel: the start of a run, the fan-out, and one panelist's answer.

Each panelist is a plan (graph/steps.py), written once for `invoke` and `ainvoke`: research
while steps remain, then answer. A failure is recorded as the contract says and never stops
the other panelists; a panelist still running at the deadline, or past the straggler grace,
is abandoned (graph/deadline.py) and recorded as timed out.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import get_runtime
from langgraph.types import Overwrite, Send

from langchain_fusion.contract import events
from langchain_fusion.contract.errors import (
    DeliberationRefused,
    describe_error,
    is_programming_error,
    status_code_of,
)
from langchain_fusion.graph.budget import (
    approximate_tokens,
    check_budget,
    estimate_budget,
)
from langchain_fusion.graph.context import Abandon, BudgetSpent, FusionContext
from langchain_fusion.graph.deadline import PanelistTimedOut, awatch, watch
from langchain_fusion.graph.progress import Progress
from langchain_fusion.graph.prompts import is_instruction_message
from langchain_fusion.graph.research import ResearchTurn, reported_model
from langchain_fusion.graph.setup import FusionSetup, PanelSeat
from langchain_fusion.graph.state import CascadeState, FusionState, PanelOutcome, PanelTask
from langchain_fusion.graph.steps import Call, Plan

PANELIST = "panelist"


def start(state: FusionState) -> dict[str, Any]:
    """Check the conversation and the budget, and announce the panel.

    Reads `messages`. Clears what an earlier turn of the same thread left. Emits
    `in_progress` and one `panel.added` per seat. Raises `DeliberationRefused` before any
    model is called when there is nothing to deliberate on, or when the worst case could
    exceed the budget (`BudgetExceededError`, with the estimate).
    """
    context = get_runtime(FusionContext).context
    setup = context.setup
    if not any(
        not is_instruction_message(message) and message.text.strip() for message in state.messages
    ):
        raise DeliberationRefused(
            "a deliberation needs a conversation with at least one non-empty user message"
        )
    limits = setup.limits
    if limits.max_total_tokens is not None or limits.max_cost is not None:
        check_budget(limits, _estimate(state.messages, setup))
    progress = _progress(context)
    progress.emit(events.IN_PROGRESS, panel=[seat.label for seat in setup.panel])
    for seat in setup.first_seats:  # a cascade's other seats are added if it escalates
        progress.emit(events.PANEL_ADDED, model=seat.label, panel_index=seat.index)
    # A thread (checkpointer) keeps state between turns: each turn deliberates afresh.
    return {
        "panel_outcomes": Overwrite([]),
        "verdict": None,
        "result": None,
        "answer": None,
        "synthesis_error": None,
        "cascade": CascadeState() if setup.cascade is not None else None,
    }


def _estimate(messages: list[Any], setup: FusionSetup) -> Any:
    return estimate_budget(
        prompt_tokens=approximate_tokens(messages),
        max_completion_tokens=setup.parameters.max_completion_tokens,
        prices=setup.limits.prices,
        **setup.estimate_inputs(),
    )


def dispatch_panel(state: FusionState) -> list[Send]:
    """Fan out: one `panelist` run per seat (a cascade's first seats), all in parallel,
    each with the whole conversation."""
    setup = get_runtime(FusionContext).context.setup
    return [
        Send(PANELIST, PanelTask(index=seat.index, messages=list(state.messages)))
        for seat in setup.first_seats
    ]


def panelist(task: PanelTask, config: RunnableConfig) -> dict[str, Any]:
    """Ask one panel model, with at most `max_tool_calls` tool steps.

    Reads one `PanelTask`. Writes one `panel_outcomes` entry, an answer or a failure.
    Emits `panel.delta` (when someone listens), `panel.researching` before each research
    step, then `panel.completed` or `panel.failed`, each with the seat's `usage`.
    """
    runtime = get_runtime(FusionContext)
    answer = PanelAnswer(runtime.context, runtime.stream_writer, task)
    try:
        outcome = watch(answer.plan(), config, runtime.context.clock, answer.abandon)
    except PanelistTimedOut as stopped:
        outcome = answer.failed(stopped)
    return answer.report(outcome)


async def apanelist(task: PanelTask, config: RunnableConfig) -> dict[str, Any]:
    """Async `panelist`: the same plan; a stopped panelist's call is cancelled and its
    connection closed."""
    runtime = get_runtime(FusionContext)
    answer = PanelAnswer(runtime.context, runtime.stream_writer, task)
    try:
        outcome = await awatch(answer.plan(), config, runtime.context.clock)
    except PanelistTimedOut as stopped:
        outcome = answer.failed(stopped)
    return answer.report(outcome)


class PanelAnswer:
    """One seat's work in one run: its plan, and the outcome it reports."""

    def __init__(self, context: FusionContext, writer: Any, task: PanelTask) -> None:
        self.context = context
        self.seat: PanelSeat = context.setup.panel[task.index]
        self.progress = _progress(context, writer)
        self.abandon = Abandon()
        self.turn = ResearchTurn(
            list(task.messages),
            context.setup.parameters.max_tool_calls,
            context.clock,
            self.seat.label,
        )

    def plan(self) -> Plan[PanelOutcome]:
        """Research while steps remain, then answer; failures become the outcome."""
        seat, turn, tools = self.seat, self.turn, self.context.setup.tools
        message: Any = None
        try:
            while True:
                self.context.clock.ensure_budget()  # no new call once the budget is spent
                # Tools while steps remain; after the last step, the model with none.
                model = seat.research_model if turn.may_research else None
                researching = model is not None
                message = yield Call(
                    model or seat.model,
                    turn.transcript,
                    stream=self.progress.stream_tokens,
                    on_chunk=self._delta,
                )
                turn.count(message)
                tool_turn = turn.wants_tools(message) if researching else None
                if tool_turn is None or tools is None:
                    break
                self._researching(tool_turn)
                yield from turn.run_tools(tools, tool_turn)
        except BudgetSpent as spent:
            return self.failed(spent, stopped="budget")
        except Exception as error:
            if is_programming_error(error):
                raise
            return self.failed(error)
        return self.answered(message)

    def _researching(self, tool_turn: Any) -> None:
        with self.abandon.lock:  # like its tokens: never after this seat's `panel.failed`
            if not self.abandon.is_set():
                self.progress.emit(
                    events.PANEL_RESEARCHING,
                    model=self.seat.label,
                    panel_index=self.seat.index,
                    research=self.turn.step_report(tool_turn),
                )

    def _delta(self, chunk: Any) -> None:
        with self.abandon.lock:  # never after this seat's `panel.failed`
            if not self.abandon.is_set():
                self.progress.panel_delta(self.seat.label, self.seat.index, chunk)

    def failed(self, error: BaseException | str, stopped: str | None = None) -> PanelOutcome:
        if isinstance(error, PanelistTimedOut):
            stopped = "deadline"
        return PanelOutcome(
            index=self.seat.index,
            model=self.seat.label,
            error=error if isinstance(error, str) else describe_error(error),
            status_code=None if isinstance(error, str) else status_code_of(error),
            usage=self.turn.usage,
            sources=tuple(self.turn.sources),
            stopped=stopped,
        )

    def answered(self, message: BaseMessage | None) -> PanelOutcome:
        content = message.text if message is not None else ""
        if not content.strip():
            return self.failed("empty completion")
        if not self.abandon.is_set():  # a straggler given up on counts toward no quorum
            self.context.clock.record_success()
        return PanelOutcome(
            index=self.seat.index,
            model=self.seat.name(reported_model(message)),
            content=content,
            usage=self.turn.usage,
            sources=tuple(self.turn.sources),
        )

    def report(self, outcome: PanelOutcome) -> dict[str, Any]:
        """The outcome as the node's update, announced on the progress stream."""
        if outcome.content is not None:
            self.progress.emit(
                events.PANEL_COMPLETED,
                model=outcome.model,
                panel_index=outcome.index,
                content=outcome.content,
                usage=outcome.usage.model_dump(),
            )
        else:
            self.progress.emit(
                events.PANEL_FAILED,
                model=outcome.model,
                panel_index=outcome.index,
                error=outcome.error,
                status_code=outcome.status_code,
                usage=outcome.usage.model_dump(),  # what the seat spent before it failed
            )
        return {"panel_outcomes": [outcome]}


def _progress(context: FusionContext, writer: Any = None) -> Progress:
    if writer is None:
        writer = get_runtime(FusionContext).stream_writer
    return Progress(writer, stream_tokens=context.stream_tokens)
