"""The judge: compares the panel's answers and returns the analysis as strict JSON.

One plan for `invoke` and `ainvoke`: research while steps remain (with tools), the
structured call, one retry with the parse error shown, then the fallback judge. The judge
runs only when the quorum is met (graph/quorum.py), and makes no call once the budget is
spent or the deadline has passed.
"""

from __future__ import annotations

from typing import Any, cast

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import get_runtime

from langchain_fusion.contract import events
from langchain_fusion.contract.errors import describe_error, is_programming_error
from langchain_fusion.contract.result import FailureReason, FusionAnalysis
from langchain_fusion.graph.anonymity import JudgeView
from langchain_fusion.graph.context import BudgetSpent, FusionContext, RunClock
from langchain_fusion.graph.healing import heal_json
from langchain_fusion.graph.progress import Progress
from langchain_fusion.graph.prompts import JUDGE_RETRY_PROMPT, JUDGE_SYSTEM_PROMPT, judge_request
from langchain_fusion.graph.research import ResearchTurn, reported_model, usage_of
from langchain_fusion.graph.setup import FusionSetup, JudgeSeat
from langchain_fusion.graph.state import FusionState, Verdict, responses_of
from langchain_fusion.graph.steps import Call, Plan, afinish, finish

JUDGE = "judge"

_PARSE_FAILURES = {"judge_not_valid_json", "judge_schema_mismatch", "judge_empty_completion"}


def judge(state: FusionState, config: RunnableConfig) -> dict[str, Any]:
    """Compare the panel's answers.

    Reads `messages` (never system or developer messages) and `panel_outcomes`. Writes
    `verdict`. Emits `analysis.in_progress` for each judge asked.
    """
    return {"verdict": finish(_plan(state), config)}


async def ajudge(state: FusionState, config: RunnableConfig) -> dict[str, Any]:
    """Async `judge`: the same plan."""
    return {"verdict": await afinish(_plan(state), config)}


def _plan(state: FusionState) -> Plan[Verdict]:
    runtime = get_runtime(FusionContext)
    progress = Progress(runtime.stream_writer, stream_tokens=runtime.context.stream_tokens)
    return judge_plan(state, runtime.context.setup, runtime.context.clock, progress)


def judge_plan(
    state: FusionState, setup: FusionSetup, clock: RunClock, progress: Progress
) -> Plan[Verdict]:
    """Ask each judge in turn until one returns a usable analysis."""
    view = JudgeView.of(
        responses_of(state.panel_outcomes),
        state.messages,
        anonymize=setup.anonymize_judge,
        seed=setup.judge_shuffle_seed,
    )
    transcript: list[BaseMessage] = [
        SystemMessage(JUDGE_SYSTEM_PROMPT),
        HumanMessage(judge_request(state.messages, view.responses)),
    ]
    verdict = Verdict()
    for seat in setup.judges:
        progress.emit(events.ANALYSIS_IN_PROGRESS, analyst_model=seat.label, judge_model=seat.label)
        if clock.past_deadline():
            verdict.failure = "deadline_exceeded"
            verdict.error = f"the deliberation deadline of {setup.limits.deadline:g} s passed"
            break
        try:
            output = yield from _attempt(seat, list(transcript), setup, clock, verdict)
            _read(verdict, output)
            if verdict.failure in _PARSE_FAILURES:
                # Once more, with the reason the reply could not be used.
                raw = output.get("raw")
                retry = [
                    *transcript,
                    AIMessage(raw.text if isinstance(raw, BaseMessage) else ""),
                    HumanMessage(JUDGE_RETRY_PROMPT.format(error=_short(verdict.error))),
                ]
                clock.ensure_budget()
                output = _as_output((yield Call(seat.structured, retry)))
                _count(verdict, seat, output, clock)
                _read(verdict, output)
        except BudgetSpent as spent:
            verdict.analysis, verdict.failure, verdict.error = None, "budget_exceeded", str(spent)
            break
        except Exception as error:
            if is_programming_error(error):
                raise
            verdict.analysis = None
            verdict.failure, verdict.error = "judge_upstream_error", describe_error(error)
        if verdict.analysis is not None:
            verdict.analysis = view.restore(verdict.analysis)
            break
    return verdict


def _attempt(
    seat: JudgeSeat,
    transcript: list[BaseMessage],
    setup: FusionSetup,
    clock: RunClock,
    verdict: Verdict,
) -> Plan[dict[str, Any]]:
    """One judge: research while steps remain, then the structured call."""
    turn = ResearchTurn(transcript, setup.parameters.max_tool_calls, clock, seat.label)
    try:
        while seat.research is not None and turn.may_research:
            clock.ensure_budget()
            try:
                message = yield Call(seat.research, turn.transcript)
            except Exception as error:
                return _salvaged(error)
            turn.count(message)
            # With no local tools, OpenRouter ran the web tools itself within the call.
            tool_turn = turn.wants_tools(message) if setup.tools is not None else None
            if tool_turn is None or setup.tools is None:
                return _raw_output(message)
            yield from turn.run_tools(setup.tools, tool_turn)
        clock.ensure_budget()
        try:
            output = _as_output((yield Call(seat.structured, turn.transcript)))
        except Exception as error:
            output = _salvaged(error)
        turn.count(output.get("raw"))
        return output
    finally:
        # Keyed by the concrete model, as panelists are: one model, one entry.
        verdict.spend(turn.reported or seat.label, turn.usage)
        verdict.sources += turn.sources


def _salvaged(error: Exception) -> dict[str, Any]:
    """The judge's text when the client refused to parse a complete response.

    The OpenAI SDK raises (for example `LengthFinishReasonError`) on a structured response
    cut at the token limit, but keeps the completion: the healing parser still gets a look
    at it, and its usage is still counted. Any other error is the call's failure.
    """
    completion = getattr(error, "completion", None)
    choices = getattr(completion, "choices", None)
    if not choices:
        raise error
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


def _count(verdict: Verdict, seat: JudgeSeat, output: dict[str, Any], clock: RunClock) -> None:
    raw = output.get("raw")
    usage = usage_of(raw)
    clock.spend(seat.label, usage)
    verdict.spend(reported_model(raw) or seat.label, usage)


def _as_output(output: Any) -> dict[str, Any]:
    return output if isinstance(output, dict) else _raw_output(output)


def _raw_output(message: Any) -> dict[str, Any]:
    """A researching judge's reply, shaped like the structured judge's output."""
    return {"raw": message, "parsed": None, "parsing_error": None}


def _short(text: str | None, limit: int = 1_500) -> str:
    text = text or "unknown problem"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read(verdict: Verdict, output: dict[str, Any]) -> None:
    verdict.analysis, verdict.failure, verdict.error = read_analysis(output)


def read_analysis(
    output: dict[str, Any],
) -> tuple[FusionAnalysis | None, FailureReason | None, str | None]:
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
    return None, cast(FailureReason, reason), healed.detail
