"""The graph's nodes: one function per step, each saying what it reads and writes.

Nodes that call models come in pairs (`panelist` / `apanelist`, ...) so that `invoke` and
`ainvoke` both run natively; the pairs share everything but the call itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from asyncio import FIRST_COMPLETED
from collections.abc import Callable, Coroutine, Generator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.messages import SystemMessage as System
from langchain_core.messages.ai import add_ai_message_chunks
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.types import Overwrite, Send

from langchain_fusion import events
from langchain_fusion.configuration import FusionConfiguration, PanelSeat
from langchain_fusion.errors import describe_error, run_failure_reason, status_code_of
from langchain_fusion.healing import heal_json
from langchain_fusion.limits import (
    RUNS,
    BudgetExceededError,
    BudgetSpent,
    RunControl,
    approximate_tokens,
    check_budget,
    estimate_budget,
)
from langchain_fusion.prompts import (
    JUDGE_RETRY_PROMPT,
    JUDGE_SYSTEM_PROMPT,
    is_instruction_message,
    judge_request,
    synthesis_request,
)
from langchain_fusion.research import deduplicate_sources, sources_of
from langchain_fusion.result import (
    FailedModel,
    FailureReason,
    FusionAnalysis,
    FusionResult,
    FusionUsage,
    PanelResponse,
    Source,
    TokenUsage,
)
from langchain_fusion.state import FusionState, PanelOutcome, PanelTask

PANELIST = "panelist"
JUDGE = "judge"
SYNTHESIS = "synthesis"


# --- start ------------------------------------------------------------------------------


def start(state: FusionState, *, configuration: FusionConfiguration) -> dict[str, Any]:
    """Check the conversation and announce the panel.

    Reads `messages`. Writes `run_key` (the run's deadline, quorum and budget ledger), and
    clears what an earlier turn of the same thread left.
    Emits `in_progress` and one `panel.added` per seat. Raises `ValueError` before any
    model is called when there is nothing to deliberate on, or when the worst case could
    exceed the budget (`BudgetExceededError`, with the estimate).
    """
    if not any(
        not is_instruction_message(message) and message.text.strip() for message in state.messages
    ):
        raise ValueError(
            "a deliberation needs a conversation with at least one non-empty user message"
        )
    limits = configuration.limits
    if limits.max_total_tokens is not None or limits.max_cost is not None:
        check_budget(limits, _estimate(state, configuration))
    run_key = RUNS.open(limits)
    events.emit(events.IN_PROGRESS, panel=[seat.label for seat in configuration.panel])
    for seat in configuration.panel:
        events.emit(events.PANEL_ADDED, model=seat.label, panel_index=seat.index)
    # A thread (checkpointer) keeps state between turns: each turn deliberates afresh.
    return {
        "run_key": run_key,
        "panel_outcomes": Overwrite([]),
        "analysis": None,
        "judge_failure": None,
        "judge_error": None,
        "result": None,
        "answer": None,
        "synthesis_error": None,
    }


def _estimate(state: FusionState, configuration: FusionConfiguration) -> Any:
    params = configuration.parameters
    if params.max_completion_tokens is None:
        raise BudgetExceededError(
            "a budget (max_total_tokens / max_cost) needs max_completion_tokens, so that the "
            "worst case of the run can be bounded before any model is called"
        )
    researching = any(seat.research_model is not None for seat in configuration.panel)
    return estimate_budget(
        prompt_tokens=approximate_tokens(state.messages),
        panel=[seat.label for seat in configuration.panel],
        judge=configuration.judge_label,
        synthesizer=configuration.synthesizer_label,
        max_completion_tokens=params.max_completion_tokens,
        tool_steps=params.max_tool_calls if researching else 0,
        judge_tool_steps=params.max_tool_calls if configuration.judge_research else 0,
        prices=configuration.limits.prices,
        judge_attempts=2 * (2 if configuration.fallback_judge is not None else 1),
    )


def dispatch_panel(state: FusionState, *, configuration: FusionConfiguration) -> list[Send]:
    """Fan out: one `panelist` run per seat, all in parallel, each with the whole conversation."""
    return [
        Send(
            PANELIST,
            PanelTask(index=seat.index, messages=list(state.messages), run_key=state.run_key),
        )
        for seat in configuration.panel
    ]


# --- panel ------------------------------------------------------------------------------


def panelist(
    task: PanelTask, config: RunnableConfig, *, configuration: FusionConfiguration
) -> dict[str, Any]:
    """Ask one panel model, streaming its answer, with at most `max_tool_calls` tool steps.

    Reads one `PanelTask`. Writes one `panel_outcomes` entry, an answer or a failure (a
    failure never stops the other panelists; a panelist still running at the deadline, or
    past the straggler grace, is recorded as timed out). Emits `panel.delta`, then
    `panel.completed` or `panel.failed`.
    """
    seat = configuration.panel[task.index]
    control = RUNS.get(task.run_key, configuration.limits)
    turn = _ResearchTurn(list(task.messages), configuration.parameters.max_tool_calls, control)

    streaming = events.listening()

    def research() -> BaseMessage | None:
        while True:
            model = turn.model_for(seat.model, seat.research_model)
            if streaming:
                chunks = []
                for chunk in model.stream(turn.transcript, config):
                    _emit_delta(seat, chunk)
                    chunks.append(chunk)
                message = _joined(chunks)
            else:
                message = model.invoke(turn.transcript, config)
            if not turn.needs_tools(seat.label, message, model is seat.research_model):
                return message
            turn.add_results(configuration.tools.run(turn.last_call, config))

    try:
        message = _watch(research, control) if control.watching else research()
    except Exception as error:  # recorded as the contract says; the panel goes on
        return _panel_failure(seat, error, turn)
    return _panel_answer(seat, message, turn)


async def apanelist(
    task: PanelTask, config: RunnableConfig, *, configuration: FusionConfiguration
) -> dict[str, Any]:
    """Async `panelist`: same reads, writes and events; a stopped panelist's call is
    cancelled, and its connection closed."""
    seat = configuration.panel[task.index]
    control = RUNS.get(task.run_key, configuration.limits)
    turn = _ResearchTurn(list(task.messages), configuration.parameters.max_tool_calls, control)

    streaming = events.listening()

    async def research() -> BaseMessage | None:
        while True:
            model = turn.model_for(seat.model, seat.research_model)
            if streaming:
                chunks = []
                async for chunk in model.astream(turn.transcript, config):
                    _emit_delta(seat, chunk)
                    chunks.append(chunk)
                message = _joined(chunks)
            else:
                message = await model.ainvoke(turn.transcript, config)
            if not turn.needs_tools(seat.label, message, model is seat.research_model):
                return message
            turn.add_results(await configuration.tools.arun(turn.last_call, config))

    try:
        message = await (_awatch(research(), control) if control.watching else research())
    except Exception as error:
        return _panel_failure(seat, error, turn)
    return _panel_answer(seat, message, turn)


class PanelistTimedOut(Exception):
    """A panelist stopped by the deadline or the straggler policy."""


def _watch(work: Callable[[], BaseMessage | None], control: RunControl) -> BaseMessage | None:
    """Run `work` in a thread; give up on it at the deadline or past the straggler grace.

    A thread blocked in a socket read cannot be interrupted: an abandoned call finishes
    (or times out) on its own, its answer discarded. Async runs cancel instead.
    """
    outcome: list[BaseMessage | None] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as error:
            failure.append(error)
        with control.changed:
            control.changed.notify_all()

    context = contextvars.copy_context()  # the graph's config and stream writer
    threading.Thread(target=context.run, args=(run,), daemon=True, name="panelist").start()
    with control.changed:
        while not (outcome or failure):
            if control.should_give_up():
                raise PanelistTimedOut(control.give_up_reason())
            control.changed.wait(timeout=control.seconds_left())
    if failure:
        raise failure[0]
    return outcome[0]


async def _awatch(
    work: Coroutine[Any, Any, BaseMessage | None], control: RunControl
) -> BaseMessage | None:
    """Await `work`; cancel it at the deadline or past the straggler grace."""
    task = asyncio.ensure_future(work)
    answered = control.quorum_event()
    waiter: asyncio.Future[Any] | None = None
    try:
        while True:
            answered.clear()
            waiter = asyncio.ensure_future(answered.wait())
            done, _ = await asyncio.wait(
                {task, waiter}, timeout=control.seconds_left(), return_when=FIRST_COMPLETED
            )
            waiter.cancel()
            if task in done:
                return task.result()
            if control.should_give_up():
                raise PanelistTimedOut(control.give_up_reason())
    finally:
        # Also when the caller cancels us: nothing of this panelist may outlive the run.
        control.forget_event(answered)
        for pending in (waiter, task):
            if pending is not None and not pending.done():
                pending.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await pending


class _ResearchTurn:
    """One model's research loop: the transcript, the steps taken, usage and sources."""

    def __init__(self, transcript: list[BaseMessage], max_steps: int, control: RunControl) -> None:
        self.transcript = transcript
        self.control = control
        self.max_steps = max_steps
        self.steps = 0
        self.usage = TokenUsage()
        self.sources: list[Source] = []
        self.last_call = AIMessage("")
        self.counted: BaseMessage | None = None

    def model_for(
        self,
        answering: Runnable[LanguageModelInput, Any],
        researching: Runnable[LanguageModelInput, Any] | None,
    ) -> Runnable[LanguageModelInput, Any]:
        """Tools while steps remain; after the last step, the model with no tools bound."""
        self.control.ensure_budget()  # no new call once the budget is spent
        if researching is not None and self.steps < self.max_steps:
            return researching
        return answering

    def needs_tools(self, model: str, message: BaseMessage | None, researching: bool) -> bool:
        """Count the call; True when it asked for tools that should now run."""
        if message is None:
            return False
        self.counted = message
        usage = usage_of(message)
        self.usage += usage
        self.control.spend(model, usage)
        self.sources += sources_of([message])
        calls = getattr(message, "tool_calls", None)
        if not (researching and calls):
            return False
        self.steps += 1
        self.last_call = AIMessage(content=message.content, tool_calls=calls)
        self.transcript.append(self.last_call)
        return True

    def add_results(self, results: list[ToolMessage]) -> None:
        self.transcript += results
        self.sources += sources_of(results)


def _joined(chunks: list[BaseMessage]) -> BaseMessage | None:
    """One message from a stream's chunks, merged once (not chunk by chunk)."""
    if not chunks:
        return None
    first, *rest = chunks
    if not all(isinstance(chunk, AIMessageChunk) for chunk in chunks):
        raise TypeError("expected streamed AI message chunks")
    return add_ai_message_chunks(cast(AIMessageChunk, first), *cast(list[AIMessageChunk], rest))


def _emit_delta(seat: PanelSeat, chunk: BaseMessage) -> None:
    if text := chunk.text:
        events.emit(events.PANEL_DELTA, model=seat.label, panel_index=seat.index, delta=text)
    if reasoning := chunk.additional_kwargs.get("reasoning_content"):
        events.emit(
            events.PANEL_REASONING_DELTA, model=seat.label, panel_index=seat.index, delta=reasoning
        )


def _panel_failure(seat: PanelSeat, error: BaseException, turn: _ResearchTurn) -> dict[str, Any]:
    outcome = PanelOutcome(
        index=seat.index,
        model=seat.label,
        error=describe_error(error),
        status_code=status_code_of(error),
        usage=turn.usage,
        sources=tuple(turn.sources),
    )
    events.emit(
        events.PANEL_FAILED,
        model=seat.label,
        panel_index=seat.index,
        error=outcome.error,
        status_code=outcome.status_code,
    )
    return {"panel_outcomes": [outcome]}


def _panel_answer(
    seat: PanelSeat, message: BaseMessage | None, turn: _ResearchTurn
) -> dict[str, Any]:
    content = message.text if message is not None else ""
    usage = turn.usage
    if not content.strip():
        outcome = PanelOutcome(
            index=seat.index,
            model=seat.label,
            error="empty completion",
            usage=usage,
            sources=tuple(turn.sources),
        )
        events.emit(
            events.PANEL_FAILED,
            model=seat.label,
            panel_index=seat.index,
            error=outcome.error,
            status_code=None,
        )
        return {"panel_outcomes": [outcome]}
    name = _reported_model(message) or seat.label
    outcome = PanelOutcome(
        index=seat.index, model=name, content=content, usage=usage, sources=tuple(turn.sources)
    )
    turn.control.record_success()
    events.emit(
        events.PANEL_COMPLETED,
        model=name,
        panel_index=seat.index,
        content=content,
        usage=usage.model_dump(),
    )
    return {"panel_outcomes": [outcome]}


# --- judge ------------------------------------------------------------------------------
#
# The judge's steps (research, the structured call, one retry with the parse error, the
# fallback judge) are written once, as a generator of calls; `judge` and `ajudge` only
# differ in how they make each call.


@dataclass(frozen=True)
class _Invoke:
    """Call `runnable` on `messages`."""

    runnable: Runnable[LanguageModelInput, Any]
    messages: list[BaseMessage]


@dataclass(frozen=True)
class _RunTools:
    """Run the tool calls of `message`."""

    message: AIMessage


_JudgePlan = Generator["_Invoke | _RunTools", Any, dict[str, Any]]


def judge(
    state: FusionState, config: RunnableConfig, *, configuration: FusionConfiguration
) -> dict[str, Any]:
    """Compare the panel's answers and assemble the contract's result.

    Reads `messages` (never system or developer messages) and `panel_outcomes`. Writes
    `analysis`, `judge_failure`, `judge_error` and `result`. Emits `analysis.in_progress`,
    `analysis.completed` and `completed`. Calls no model when fewer than `min_successful`
    panelists answered. With research tools, the judge too may take `max_tool_calls` tool
    steps; an unusable reply is retried once with the parse error shown, then the fallback
    judge (if any) is asked.
    """
    plan = _judge_plan(state, configuration)
    try:
        step = next(plan)
        while True:
            try:
                if isinstance(step, _Invoke):
                    outcome: Any = step.runnable.invoke(step.messages, config)
                else:
                    outcome = configuration.tools.run(step.message, config)
            except Exception as error:
                salvaged = _salvage_judge_output(error)
                step = plan.send(salvaged) if isinstance(salvaged, dict) else plan.throw(error)
            else:
                step = plan.send(outcome)
    except StopIteration as done:
        return cast(dict[str, Any], done.value)


async def ajudge(
    state: FusionState, config: RunnableConfig, *, configuration: FusionConfiguration
) -> dict[str, Any]:
    """Async `judge`: same reads, writes and events."""
    plan = _judge_plan(state, configuration)
    try:
        step = next(plan)
        while True:
            try:
                if isinstance(step, _Invoke):
                    outcome: Any = await step.runnable.ainvoke(step.messages, config)
                else:
                    outcome = await configuration.tools.arun(step.message, config)
            except Exception as error:
                salvaged = _salvage_judge_output(error)
                step = plan.send(salvaged) if isinstance(salvaged, dict) else plan.throw(error)
            else:
                step = plan.send(outcome)
    except StopIteration as done:
        return cast(dict[str, Any], done.value)


@dataclass
class _Verdict:
    """What the judge stage produced, whichever judge produced it."""

    analysis: FusionAnalysis | None = None
    failure: str | None = None
    error: str | None = None
    usage_by_model: dict[str, TokenUsage] = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)

    def spend(self, model: str, usage: TokenUsage) -> None:
        self.usage_by_model[model] = self.usage_by_model.get(model, TokenUsage()) + usage


def _judge_plan(state: FusionState, configuration: FusionConfiguration) -> _JudgePlan:
    control = RUNS.get(state.run_key, configuration.limits)
    responses = _responses(state)
    if len(responses) < configuration.limits.min_successful:
        return _conclude(state, configuration, None)
    verdict = _Verdict()
    judges: list[tuple[str, Runnable[LanguageModelInput, Any], Any]] = [
        (configuration.judge_label, configuration.judge, configuration.judge_research)
    ]
    if configuration.fallback_judge is not None:
        label = configuration.fallback_judge_label or "fallback judge"
        judges.append((label, configuration.fallback_judge, None))
    for label, structured, research in judges:
        events.emit(events.ANALYSIS_IN_PROGRESS, model=label)
        transcript = _judge_messages(state, responses)
        try:
            output = yield from _judge_attempt(
                label, structured, research, transcript, configuration, control, verdict
            )
            verdict.analysis, verdict.failure, verdict.error = read_analysis(output)
            if verdict.failure in _PARSE_FAILURES:
                # Once more, with the reason the reply could not be used.
                raw = output.get("raw")
                retry = [
                    *transcript,
                    AIMessage(raw.text if isinstance(raw, BaseMessage) else ""),
                    HumanMessage(JUDGE_RETRY_PROMPT.format(error=_short(verdict.error))),
                ]
                control.ensure_budget()
                output = _salvaged((yield _Invoke(structured, retry)))
                verdict.spend(label, _spent(output, control, label))
                verdict.analysis, verdict.failure, verdict.error = read_analysis(output)
        except BudgetSpent as spent:
            verdict.failure, verdict.error = "budget_exceeded", str(spent)
            break
        except Exception as error:
            verdict.analysis = None
            verdict.failure, verdict.error = "judge_upstream_error", describe_error(error)
        if verdict.analysis is not None:
            break
    return _conclude(state, configuration, verdict)


_PARSE_FAILURES = {"judge_not_valid_json", "judge_schema_mismatch", "judge_empty_completion"}


def _judge_attempt(
    label: str,
    structured: Runnable[LanguageModelInput, Any],
    research: Runnable[LanguageModelInput, Any] | None,
    transcript: list[BaseMessage],
    configuration: FusionConfiguration,
    control: RunControl,
    verdict: _Verdict,
) -> Generator[_Invoke | _RunTools, Any, dict[str, Any]]:
    """One judge: research while steps remain, then the structured call."""
    turn = _ResearchTurn(transcript, configuration.parameters.max_tool_calls, control)
    try:
        while research is not None and turn.steps < turn.max_steps:
            control.ensure_budget()
            message = yield _Invoke(research, turn.transcript)
            if isinstance(message, dict):  # a salvaged reply the client refused to parse
                return message
            if not turn.needs_tools(label, message, researching=True):
                return _raw_output(message)
            turn.add_results((yield _RunTools(turn.last_call)))
        control.ensure_budget()
        output = _salvaged((yield _Invoke(structured, turn.transcript)))
        turn.usage += _spent(output, control, label)
        return output
    finally:
        verdict.spend(label, turn.usage)
        verdict.sources += turn.sources


def _salvaged(output: Any) -> dict[str, Any]:
    return output if isinstance(output, dict) else _raw_output(output)


def _spent(output: dict[str, Any], control: RunControl, label: str) -> TokenUsage:
    usage = usage_of(output.get("raw"))
    control.spend(label, usage)
    return usage


def _short(text: str | None, limit: int = 1_500) -> str:
    text = text or "unknown problem"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _raw_output(message: BaseMessage) -> dict[str, Any]:
    """A researching judge's reply, shaped like the structured judge's output."""
    return {"raw": message, "parsed": None, "parsing_error": None}


def _responses(state: FusionState) -> list[PanelResponse]:
    return [
        PanelResponse(model=outcome.model, content=outcome.content)
        for outcome in sorted(state.panel_outcomes, key=lambda outcome: outcome.index)
        if outcome.content is not None
    ]


def _judge_messages(state: FusionState, responses: Sequence[PanelResponse]) -> list[BaseMessage]:
    return [System(JUDGE_SYSTEM_PROMPT), HumanMessage(judge_request(state.messages, responses))]


def _salvage_judge_output(error: Exception) -> dict[str, Any] | Exception:
    """The judge's text when the client refused to parse a complete response.

    The OpenAI SDK raises (for example `LengthFinishReasonError`) on a structured response
    cut at the token limit, but keeps the completion: the healing parser still gets a
    look at it, and the usage is still counted.
    """
    completion = getattr(error, "completion", None)
    choices = getattr(completion, "choices", None)
    if not choices:
        return error
    usage = getattr(completion, "usage", None)
    message = AIMessage(
        choices[0].message.content or "",
        usage_metadata={
            "input_tokens": getattr(usage, "prompt_tokens", 0) or 0,
            "output_tokens": getattr(usage, "completion_tokens", 0) or 0,
            "total_tokens": getattr(usage, "total_tokens", 0) or 0,
        },
        response_metadata={"finish_reason": choices[0].finish_reason},
    )
    return {"raw": message, "parsed": None, "parsing_error": error}


def read_analysis(output: dict[str, Any]) -> tuple[FusionAnalysis | None, str | None, str | None]:
    """The analysis from a structured judge's output, healing its raw text if needed.

    Returns `(analysis, failure_reason, error)`; exactly one of the first two is set.
    """
    parsed = output.get("parsed")
    if parsed is not None:
        try:
            return FusionAnalysis.model_validate(parsed), None, None
        except ValueError:
            pass  # the raw text may still hold a valid object
    raw = output.get("raw")
    text = raw.text if isinstance(raw, BaseMessage) else ""
    healed = heal_json(text, FusionAnalysis)
    if healed.value is not None:
        return healed.value, None, None
    reason = {
        "empty": "judge_empty_completion",
        "not_json": "judge_not_valid_json",
        "schema_mismatch": "judge_schema_mismatch",
    }[healed.problem or "not_json"]
    return None, reason, healed.detail


def _conclude(
    state: FusionState, configuration: FusionConfiguration, verdict: _Verdict | None
) -> dict[str, Any]:
    """Assemble the result from the panel's outcomes and the judge's verdict (if it ran)."""
    verdict = verdict or _Verdict()
    outcomes = sorted(state.panel_outcomes, key=lambda outcome: outcome.index)
    failed = [
        FailedModel(model=o.model, error=o.error, status_code=o.status_code)
        for o in outcomes
        if o.error is not None
    ]
    usage = FusionUsage()
    for outcome in outcomes:
        usage.panel += outcome.usage
        _add_model_usage(usage, outcome.model, outcome.usage)
    for model, spent in verdict.usage_by_model.items():
        usage.judge += spent
        _add_model_usage(usage, model, spent)

    result = FusionResult(
        analysis=verdict.analysis,
        responses=_responses(state),
        failed_models=failed,
        sources=deduplicate_sources(
            [source for outcome in outcomes for source in outcome.sources] + verdict.sources
        ),
        usage=usage,
        degraded=bool(failed),
    )
    minimum = configuration.limits.min_successful
    if not result.responses:
        result.status = "error"
        result.failure_reason = run_failure_reason(failed)
        result.failure_detail = "; ".join(f"{f.model}: {f.error}" for f in failed)
    elif len(result.responses) < minimum:
        result.status = "error"
        result.failure_reason = "quorum_not_met"
        result.failure_detail = (
            f"{len(result.responses)} of {len(outcomes)} panelists answered; "
            f"min_successful={minimum}. " + "; ".join(f"{f.model}: {f.error}" for f in failed)
        )
    elif verdict.failure is not None:
        result.failure_reason = cast(FailureReason, verdict.failure)
        result.failure_detail = verdict.error
    if verdict.analysis is not None:
        events.emit(events.ANALYSIS_COMPLETED, analysis=verdict.analysis.model_dump(mode="json"))
    events.emit(events.COMPLETED, result=result.model_dump(mode="json"))
    if configuration.synthesizer is None or result.status != "ok":
        RUNS.close(state.run_key)  # nothing more will run
    return {
        "analysis": verdict.analysis,
        "judge_failure": verdict.failure,
        "judge_error": verdict.error,
        "result": result,
    }


def _add_model_usage(usage: FusionUsage, model: str, call: TokenUsage) -> None:
    usage.by_model[model] = usage.by_model.get(model, TokenUsage()) + call


# --- synthesis --------------------------------------------------------------------------


def route_after_judge(state: FusionState, *, configuration: FusionConfiguration) -> str:
    """Synthesise only in the standalone form, and only when someone answered."""
    result = state.result
    if configuration.synthesizer is None or result is None or not result.responses:
        return "__end__"
    return SYNTHESIS


def synthesis(
    state: FusionState, config: RunnableConfig, *, configuration: FusionConfiguration
) -> dict[str, Any]:
    """Write the final answer from the analysis and the answers (standalone use).

    Reads `messages` (system messages included: the outer model serves the user),
    `result`. Writes `answer`, an AI message, and the synthesis usage into `result`; on
    failure `synthesis_error`, keeping the result intact.
    """
    assert configuration.synthesizer is not None
    message: BaseMessage | None = None
    try:
        RUNS.get(state.run_key, configuration.limits).ensure_budget()
        # `invoke` streams by itself when a streaming callback listens (LangGraph's
        # `messages` mode, `astream_events`); otherwise one response is far cheaper.
        message = configuration.synthesizer.invoke(_synthesis_messages(state), config)
    except Exception as error:
        return {"synthesis_error": describe_error(error)}
    finally:
        RUNS.close(state.run_key)
    return _synthesis_update(state, configuration, message)


async def asynthesis(
    state: FusionState, config: RunnableConfig, *, configuration: FusionConfiguration
) -> dict[str, Any]:
    """Async `synthesis`: same reads and writes."""
    assert configuration.synthesizer is not None
    message: BaseMessage | None = None
    try:
        RUNS.get(state.run_key, configuration.limits).ensure_budget()
        message = await configuration.synthesizer.ainvoke(_synthesis_messages(state), config)
    except Exception as error:
        return {"synthesis_error": describe_error(error)}
    finally:
        RUNS.close(state.run_key)
    return _synthesis_update(state, configuration, message)


def _synthesis_messages(state: FusionState) -> list[BaseMessage]:
    assert state.result is not None
    request = synthesis_request(
        state.result.analysis,
        state.result.responses,
        judge_failure=state.result.failure_reason,
    )
    return [*state.messages, HumanMessage(request)]


def _synthesis_update(
    state: FusionState, configuration: FusionConfiguration, message: BaseMessage | None
) -> dict[str, Any]:
    assert state.result is not None
    answer = message.text if message is not None else ""
    if not answer.strip():
        return {"synthesis_error": "the outer model returned an empty answer"}
    usage = usage_of(message) if message is not None else TokenUsage()
    result = state.result.model_copy(deep=True)
    result.usage.synthesis = usage
    _add_model_usage(result.usage, configuration.synthesizer_label or "synthesis", usage)
    name = _reported_model(message) or configuration.synthesizer_label
    return {
        "answer": answer,
        "result": result,
        "messages": [AIMessage(answer, name=None, response_metadata={"model_name": name})],
    }


# --- shared -----------------------------------------------------------------------------


def usage_of(message: Any) -> TokenUsage:
    """Tokens and cost of one model call, from its message's metadata."""
    if not isinstance(message, BaseMessage):
        return TokenUsage()
    metadata = getattr(message, "usage_metadata", None) or {}
    cost = message.response_metadata.get("cost")
    return TokenUsage(
        input_tokens=metadata.get("input_tokens", 0),
        output_tokens=metadata.get("output_tokens", 0),
        total_tokens=metadata.get("total_tokens", 0),
        cost=float(cost) if isinstance(cost, (int, float)) else None,
    )


def _reported_model(message: BaseMessage | None) -> str | None:
    if message is None:
        return None
    name = message.response_metadata.get("model_name")
    return name if isinstance(name, str) and name else None
