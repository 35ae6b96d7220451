"""The graph's nodes: one function per step, each saying what it reads and writes.

Nodes that call models come in pairs (`panelist` / `apanelist`, ...) so that `invoke` and
`ainvoke` both run natively; the pairs share everything but the call itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    BaseMessageChunk,
    HumanMessage,
    ToolMessage,
)
from langchain_core.messages import SystemMessage as System
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.types import Send

from langchain_fusion import events
from langchain_fusion.configuration import FusionConfiguration, PanelSeat
from langchain_fusion.errors import describe_error, run_failure_reason, status_code_of
from langchain_fusion.healing import heal_json
from langchain_fusion.prompts import (
    JUDGE_SYSTEM_PROMPT,
    is_instruction_message,
    judge_request,
    synthesis_request,
)
from langchain_fusion.research import deduplicate_sources, sources_of
from langchain_fusion.result import (
    FailedModel,
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

    Reads `messages`. Writes nothing. Emits `in_progress` and one `panel.added` per seat.
    Raises `ValueError` before any model is called when there is nothing to deliberate on.
    """
    if not any(
        not is_instruction_message(message) and message.text.strip() for message in state.messages
    ):
        raise ValueError(
            "a deliberation needs a conversation with at least one non-empty user message"
        )
    events.emit(events.IN_PROGRESS, panel=[seat.label for seat in configuration.panel])
    for seat in configuration.panel:
        events.emit(events.PANEL_ADDED, model=seat.label, panel_index=seat.index)
    return {}


def dispatch_panel(state: FusionState, *, configuration: FusionConfiguration) -> list[Send]:
    """Fan out: one `panelist` run per seat, all in parallel, each with the whole conversation."""
    return [
        Send(PANELIST, PanelTask(index=seat.index, messages=list(state.messages)))
        for seat in configuration.panel
    ]


# --- panel ------------------------------------------------------------------------------


def panelist(
    task: PanelTask, config: RunnableConfig, *, configuration: FusionConfiguration
) -> dict[str, Any]:
    """Ask one panel model, streaming its answer, with at most `max_tool_calls` tool steps.

    Reads one `PanelTask`. Writes one `panel_outcomes` entry, an answer or a failure (a
    failure never stops the other panelists). Emits `panel.delta`, then `panel.completed`
    or `panel.failed`.
    """
    seat = configuration.panel[task.index]
    turn = _ResearchTurn(list(task.messages), configuration.parameters.max_tool_calls)
    try:
        while True:
            model = turn.model_for(seat.model, seat.research_model)
            message: BaseMessageChunk | None = None
            for chunk in model.stream(turn.transcript, config):
                _emit_delta(seat, chunk)
                message = _merge(message, chunk)
            if not turn.needs_tools(message, model is seat.research_model):
                break
            turn.add_results(configuration.tools.run(turn.last_call, config))
    except Exception as error:  # recorded as the contract says; the panel goes on
        return _panel_failure(seat, error, turn)
    return _panel_answer(seat, message, turn)


async def apanelist(
    task: PanelTask, config: RunnableConfig, *, configuration: FusionConfiguration
) -> dict[str, Any]:
    """Async `panelist`: same reads, writes and events."""
    seat = configuration.panel[task.index]
    turn = _ResearchTurn(list(task.messages), configuration.parameters.max_tool_calls)
    try:
        while True:
            model = turn.model_for(seat.model, seat.research_model)
            message: BaseMessageChunk | None = None
            async for chunk in model.astream(turn.transcript, config):
                _emit_delta(seat, chunk)
                message = _merge(message, chunk)
            if not turn.needs_tools(message, model is seat.research_model):
                break
            turn.add_results(await configuration.tools.arun(turn.last_call, config))
    except Exception as error:
        return _panel_failure(seat, error, turn)
    return _panel_answer(seat, message, turn)


class _ResearchTurn:
    """One model's research loop: the transcript, the steps taken, usage and sources."""

    def __init__(self, transcript: list[BaseMessage], max_steps: int) -> None:
        self.transcript = transcript
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
        if researching is not None and self.steps < self.max_steps:
            return researching
        return answering

    def needs_tools(self, message: BaseMessage | None, researching: bool) -> bool:
        """Count the call; True when it asked for tools that should now run."""
        if message is None:
            return False
        self.counted = message
        self.usage += usage_of(message)
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


def _merge(total: BaseMessageChunk | None, chunk: BaseMessage) -> BaseMessageChunk:
    """Add a streamed chunk to the message so far."""
    if not isinstance(chunk, BaseMessageChunk):
        raise TypeError(f"expected a streamed message chunk, got {type(chunk).__name__}")
    return chunk if total is None else total + chunk


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
    events.emit(
        events.PANEL_COMPLETED,
        model=name,
        panel_index=seat.index,
        content=content,
        usage=usage.model_dump(),
    )
    return {"panel_outcomes": [outcome]}


# --- judge ------------------------------------------------------------------------------


def judge(
    state: FusionState, config: RunnableConfig, *, configuration: FusionConfiguration
) -> dict[str, Any]:
    """Compare the panel's answers and assemble the contract's result.

    Reads `messages` (never system or developer messages) and `panel_outcomes`. Writes
    `analysis`, `judge_failure`, `judge_error` and `result`. Emits `analysis.in_progress`,
    `analysis.completed` and `completed`. Calls no model when no panelist answered. With
    research tools, the judge too may take `max_tool_calls` tool steps.
    """
    responses = _responses(state)
    if not responses:
        return _conclude(state, configuration, None)
    events.emit(events.ANALYSIS_IN_PROGRESS, model=configuration.judge_label)
    turn = _ResearchTurn(_judge_messages(state, responses), configuration.parameters.max_tool_calls)
    try:
        while configuration.judge_research is not None and turn.steps < turn.max_steps:
            message = configuration.judge_research.invoke(turn.transcript, config)
            if not turn.needs_tools(message, researching=True):
                return _conclude(state, configuration, _raw_output(message), turn)
            turn.add_results(configuration.tools.run(turn.last_call, config))
        output = configuration.judge.invoke(turn.transcript, config)
    except Exception as error:
        output = _salvage_judge_output(error)
    return _conclude(state, configuration, output, turn)


async def ajudge(
    state: FusionState, config: RunnableConfig, *, configuration: FusionConfiguration
) -> dict[str, Any]:
    """Async `judge`: same reads, writes and events."""
    responses = _responses(state)
    if not responses:
        return _conclude(state, configuration, None)
    events.emit(events.ANALYSIS_IN_PROGRESS, model=configuration.judge_label)
    turn = _ResearchTurn(_judge_messages(state, responses), configuration.parameters.max_tool_calls)
    try:
        while configuration.judge_research is not None and turn.steps < turn.max_steps:
            message = await configuration.judge_research.ainvoke(turn.transcript, config)
            if not turn.needs_tools(message, researching=True):
                return _conclude(state, configuration, _raw_output(message), turn)
            turn.add_results(await configuration.tools.arun(turn.last_call, config))
        output = await configuration.judge.ainvoke(turn.transcript, config)
    except Exception as error:
        output = _salvage_judge_output(error)
    return _conclude(state, configuration, output, turn)


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
    state: FusionState,
    configuration: FusionConfiguration,
    judge_output: dict[str, Any] | BaseException | None,
    turn: _ResearchTurn | None = None,
) -> dict[str, Any]:
    """Assemble the result from the panel's outcomes and the judge's output (if it ran)."""
    analysis = failure = error = None
    judge_usage = turn.usage if turn is not None else TokenUsage()
    judge_sources = turn.sources if turn is not None else []
    if isinstance(judge_output, BaseException):
        failure, error = "judge_upstream_error", describe_error(judge_output)
    elif judge_output is not None:
        if turn is None or judge_output.get("raw") is not turn.counted:
            judge_usage = judge_usage + usage_of(judge_output.get("raw"))
        analysis, failure, error = read_analysis(judge_output)
        if failure is not None and judge_output.get("parsing_error") is not None:
            error = f"{error} ({describe_error(judge_output['parsing_error'])})"

    outcomes = sorted(state.panel_outcomes, key=lambda outcome: outcome.index)
    failed = [
        FailedModel(model=o.model, error=o.error, status_code=o.status_code)
        for o in outcomes
        if o.error is not None
    ]
    usage = FusionUsage(judge=judge_usage)
    for outcome in outcomes:
        usage.panel += outcome.usage
        _add_model_usage(usage, outcome.model, outcome.usage)
    if judge_output is not None:
        _add_model_usage(usage, configuration.judge_label, judge_usage)

    result = FusionResult(
        analysis=analysis,
        responses=_responses(state),
        failed_models=failed,
        sources=deduplicate_sources(
            [source for outcome in outcomes for source in outcome.sources] + judge_sources
        ),
        usage=usage,
    )
    if not result.responses:
        result.status = "error"
        result.failure_reason = run_failure_reason(failed)
        result.failure_detail = "; ".join(f"{f.model}: {f.error}" for f in failed)
    elif failure is not None:
        result.failure_reason = failure  # type: ignore[assignment]
        result.failure_detail = error
    if analysis is not None:
        events.emit(events.ANALYSIS_COMPLETED, analysis=analysis.model_dump(mode="json"))
    events.emit(events.COMPLETED, result=result.model_dump(mode="json"))
    return {
        "analysis": analysis,
        "judge_failure": failure,
        "judge_error": error,
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
    message: BaseMessageChunk | None = None
    try:
        for chunk in configuration.synthesizer.stream(_synthesis_messages(state), config):
            message = _merge(message, chunk)
    except Exception as error:
        return {"synthesis_error": describe_error(error)}
    return _synthesis_update(state, configuration, message)


async def asynthesis(
    state: FusionState, config: RunnableConfig, *, configuration: FusionConfiguration
) -> dict[str, Any]:
    """Async `synthesis`: same reads and writes."""
    assert configuration.synthesizer is not None
    message: BaseMessageChunk | None = None
    try:
        async for chunk in configuration.synthesizer.astream(_synthesis_messages(state), config):
            message = _merge(message, chunk)
    except Exception as error:
        return {"synthesis_error": describe_error(error)}
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
