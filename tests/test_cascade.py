"""The cascade over real HTTP against the scripted server: the first seats, and the whole
panel only when they disagree. Calls are counted at the server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from pydantic import SecretStr

from langchain_fusion import (
    Cascade,
    ChatFusion,
    FusionAnalysis,
    FusionParameters,
    FusionResult,
    FusionTool,
    OpenAICompatibleBackend,
    PanelResponse,
    create_fusion_graph,
)
from langchain_fusion.contract import events as ev
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from langchain_fusion.testing.judges import comparing_judge, responses_in

PANEL = ["cheap-a", "cheap-b", "dear-c", "dear-d"]
JUDGE = "judge-j"
QUESTION = [HumanMessage("What is 6 times 7?")]


def backend_for(server: ScriptedOpenAIServer) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        base_url=server.base_url, api_key=SecretStr("sk-test"), max_retries=0, timeout=10
    )


def script(server: ScriptedOpenAIServer, answers: Sequence[str], judge: Any = None) -> None:
    for model, answer in zip(PANEL, answers, strict=True):
        server.set_script(model, ModelScript(reply=answer))
    server.set_script(JUDGE, judge or ModelScript(json_reply=comparing_judge()))


def graph_for(server: ScriptedOpenAIServer, cascade: Any = None, **options: Any) -> Any:
    parameters = FusionParameters(analysis_models=PANEL, model=JUDGE, tools=[])
    return create_fusion_graph(
        parameters,
        backend=backend_for(server),
        synthesize=False,
        cascade={"first": 2} if cascade is None else cascade,
        **options,
    )


def calls(server: ScriptedOpenAIServer, model: str) -> int:
    return len([r for r in server.requests_for(model) if r.path.endswith("/chat/completions")])


async def run(graph: Any, path: str) -> tuple[FusionResult, list[dict[str, Any]]]:
    """The result and the progress events, by `stream` or `astream`."""
    events: list[dict[str, Any]] = []
    state: dict[str, Any] = {}
    modes = ["custom", "values"]
    if path == "sync":
        chunks: Any = graph.stream({"messages": QUESTION}, stream_mode=modes)
        for mode, chunk in chunks:
            (events.append if mode == "custom" else state.update)(chunk)
    else:
        async for mode, chunk in graph.astream({"messages": QUESTION}, stream_mode=modes):
            (events.append if mode == "custom" else state.update)(chunk)
    return state["result"], events


async def result_of(graph: Any, path: str) -> FusionResult:
    """The result by `invoke` or `ainvoke` (no one listening to events)."""
    if path == "sync":
        output = graph.invoke({"messages": QUESTION})
    else:
        output = await graph.ainvoke({"messages": QUESTION})
    result: FusionResult = output["result"]
    return result


PATHS = pytest.mark.parametrize("path", ["sync", "async"])


@PATHS
async def test_agreement_stops_after_the_first_seats(
    scripted_server: ScriptedOpenAIServer, path: str
) -> None:
    script(scripted_server, ["42", "42", "41", "40"])
    result = await result_of(graph_for(scripted_server), path)

    assert [calls(scripted_server, m) for m in PANEL] == [1, 1, 0, 0]  # the rest never called
    assert calls(scripted_server, JUDGE) == 1
    assert result.status == "ok"
    assert result.failure_reason is None
    assert [r.model for r in result.responses] == ["cheap-a", "cheap-b"]
    assert not result.degraded
    assert result.cascade is not None
    assert result.cascade.escalated is False
    assert result.cascade.first == ["cheap-a", "cheap-b"]
    assert result.cascade.rule == "analysis"
    assert "no contradictions" in result.cascade.reason
    assert set(result.cascade.stages) == {"first"}
    assert result.cascade.stages["first"].total == result.usage.total
    assert set(result.usage.by_model) == {"cheap-a", "cheap-b", JUDGE}
    dumped = result.model_dump(mode="json")
    assert dumped["cascade"]["escalated"] is False


@PATHS
async def test_disagreement_brings_in_every_seat_and_the_judge_sees_every_answer(
    scripted_server: ScriptedOpenAIServer, path: str
) -> None:
    script(scripted_server, ["42", "41", "42", "42"])
    result, events = await run(graph_for(scripted_server), path)

    assert [calls(scripted_server, m) for m in PANEL] == [1, 1, 1, 1]
    judged = [responses_in(r.body) for r in scripted_server.requests_for(JUDGE)]
    assert [[model for model, _ in shown] for shown in judged] == [PANEL[:2], PANEL]
    assert [r.model for r in result.responses] == PANEL  # every answer, in seat order
    assert result.analysis is not None
    assert result.analysis.contradictions
    cascade = result.cascade
    assert cascade is not None
    assert cascade.escalated
    assert "1 contradiction" in cascade.reason
    # Usage: each stage, and the totals hold both judge calls (the first one was paid for).
    first, escalation = cascade.stages["first"], cascade.stages["escalation"]
    assert set(first.by_model) == {"cheap-a", "cheap-b", JUDGE}
    assert set(escalation.by_model) == {"dear-c", "dear-d", JUDGE}
    assert first.judge.total_tokens > 0
    assert escalation.judge.total_tokens > 0
    assert result.usage.judge == first.judge + escalation.judge
    assert result.usage.panel == first.panel + escalation.panel
    assert result.usage.by_model[JUDGE] == first.by_model[JUDGE] + escalation.by_model[JUDGE]
    # Events: the first seats are added, the escalation announced, then the rest added.
    kinds = [(e["type"], e.get("model")) for e in events if e["type"] != ev.PANEL_DELTA]
    escalated = kinds.index((ev.CASCADE_ESCALATED, None))
    added = [(i, model) for i, (kind, model) in enumerate(kinds) if kind == ev.PANEL_ADDED]
    assert [model for i, model in added if i < escalated] == PANEL[:2]
    assert [model for i, model in added if i > escalated] == PANEL[2:]
    announcement = next(e for e in events if e["type"] == ev.CASCADE_ESCALATED)
    assert announcement["first"] == PANEL[:2]
    assert announcement["rest"] == PANEL[2:]
    assert announcement["reason"] == cascade.reason
    assert [e["type"] for e in events].count(ev.ANALYSIS_IN_PROGRESS) == 2
    assert [e["type"] for e in events].count(ev.ANALYSIS_COMPLETED) == 1


@PATHS
async def test_an_agreeing_run_emits_no_escalation_and_adds_only_the_first_seats(
    scripted_server: ScriptedOpenAIServer, path: str
) -> None:
    script(scripted_server, ["42", "42", "1", "2"])
    result, events = await run(graph_for(scripted_server), path)

    assert result.cascade is not None
    assert not result.cascade.escalated
    kinds = [e["type"] for e in events]
    assert ev.CASCADE_ESCALATED not in kinds
    added = [e["model"] for e in events if e["type"] == ev.PANEL_ADDED]
    assert added == PANEL[:2]
    completed = next(e for e in events if e["type"] == ev.COMPLETED)
    assert completed["result"]["cascade"]["escalated"] is False


@pytest.mark.parametrize(
    ("rule", "answers", "escalates"),
    [
        ({"rule": "exact"}, ["42", " 42\n", "1", "2"], False),
        ({"rule": "exact"}, ["42", "42.", "1", "2"], True),
        ({"rule": "normalised"}, ["The answer: 42.", "answer is 42", "1", "2"], False),
        ({"rule": "numeric"}, ["about 3.14159", "3.1416", "1", "2"], True),
        ({"rule": "numeric", "tolerance": 1e-4}, ["about 3.14159", "3.1416", "1", "2"], False),
        ({"rule": "numeric"}, ["forty-two", "42", "1", "2"], True),
    ],
)
@PATHS
async def test_matching_rules_compare_answers_without_a_judge_call(
    scripted_server: ScriptedOpenAIServer,
    path: str,
    rule: dict[str, Any],
    answers: list[str],
    escalates: bool,
) -> None:
    script(scripted_server, answers)
    result = await result_of(graph_for(scripted_server, {"first": 2, **rule}), path)

    assert result.cascade is not None
    assert result.cascade.escalated is escalates, result.cascade.reason
    assert result.cascade.rule == rule["rule"]
    if escalates:  # one judge call: over every answer
        assert [calls(scripted_server, m) for m in PANEL] == [1, 1, 1, 1]
        assert calls(scripted_server, JUDGE) == 1
        assert result.analysis is not None
    else:  # agreed: no judge call at all, the answers are the result
        assert [calls(scripted_server, m) for m in PANEL] == [1, 1, 0, 0]
        assert calls(scripted_server, JUDGE) == 0
        assert result.status == "ok"
        assert result.failure_reason is None
        assert result.analysis is None
        assert result.usage.judge.total_tokens == 0


@PATHS
async def test_a_callable_rule_gets_the_answers_and_the_analysis(
    scripted_server: ScriptedOpenAIServer, path: str
) -> None:
    script(scripted_server, ["42", "42", "42", "42"])
    seen: list[tuple[list[str], FusionAnalysis | None]] = []

    def never_enough(answers: Sequence[PanelResponse], analysis: FusionAnalysis | None) -> bool:
        seen.append(([a.content for a in answers], analysis))
        return False

    result = await result_of(graph_for(scripted_server, Cascade(first=3, rule=never_enough)), path)

    assert seen
    assert seen[0][0] == ["42", "42", "42"]
    assert seen[0][1] is not None
    assert seen[0][1].consensus
    assert result.cascade is not None
    assert result.cascade.escalated
    assert result.cascade.rule == "callable:never_enough"
    assert [calls(scripted_server, m) for m in PANEL] == [1, 1, 1, 1]


@PATHS
async def test_a_failed_first_stage_escalates_rather_than_failing(
    scripted_server: ScriptedOpenAIServer, path: str
) -> None:
    script(scripted_server, ["42", "42", "42", "42"])
    scripted_server.set_script("cheap-a", ModelScript(status_code=500))
    result = await result_of(graph_for(scripted_server), path)

    assert result.status == "ok"
    assert calls(scripted_server, JUDGE) == 1  # one answer is no agreement: no first judge
    assert [r.model for r in result.responses] == ["cheap-b", "dear-c", "dear-d"]
    assert [f.model for f in result.failed_models] == ["cheap-a"]
    assert result.cascade is not None
    assert result.cascade.escalated
    assert "1 of 2 first seats answered" in result.cascade.reason


@PATHS
async def test_a_failed_first_judge_escalates(
    scripted_server: ScriptedOpenAIServer, path: str
) -> None:
    script(scripted_server, ["42", "42", "42", "42"])
    good = comparing_judge()

    def broken_on_the_first_seats(body: dict[str, Any]) -> Any:
        # The retry too (its last message is the retry prompt): the first analysis fails.
        return good(body) if len(responses_in(body)) == len(PANEL) else "not json at all"

    scripted_server.set_script(JUDGE, ModelScript(json_reply=broken_on_the_first_seats))
    result = await result_of(graph_for(scripted_server), path)

    assert result.cascade is not None
    assert result.cascade.escalated
    assert "no analysis" in result.cascade.reason
    assert calls(scripted_server, JUDGE) == 3  # the first analysis, its retry, the second
    assert result.analysis is not None
    assert result.failure_reason is None
    assert len(result.responses) == 4


@PATHS
async def test_fusion_tool_runs_the_cascade(
    scripted_server: ScriptedOpenAIServer, path: str
) -> None:
    script(scripted_server, ["42", "42", "1", "2"])
    tool = FusionTool(
        backend=backend_for(scripted_server),
        analysis_models=PANEL,
        judge_model=JUDGE,
        server_tools=[],
        cascade={"first": 2},
    )
    call = {"type": "tool_call", "id": "call_1", "name": "fusion", "args": {"prompt": "6x7?"}}
    message = tool.invoke(call) if path == "sync" else await tool.ainvoke(call)
    result: FusionResult = message.artifact
    assert result.cascade is not None
    assert not result.cascade.escalated
    assert [calls(scripted_server, m) for m in PANEL] == [1, 1, 0, 0]


@PATHS
async def test_chat_fusion_runs_the_cascade(
    scripted_server: ScriptedOpenAIServer, path: str
) -> None:
    script(scripted_server, ["42", "41", "42", "42"])
    scripted_server.set_script(
        "outer-o", ModelScript(tool_calls=[{"name": "fusion", "arguments": {"prompt": "6x7?"}}])
    )
    chat = ChatFusion(
        analysis_models=PANEL,
        judge_model=JUDGE,
        outer_model="outer-o",
        base_url=scripted_server.base_url,
        api_key="sk-test",
        max_retries=0,
        server_tools=[],
        cascade=Cascade(first=2, rule="exact"),
    )
    reply = chat.invoke(QUESTION) if path == "sync" else await chat.ainvoke(QUESTION)
    assert reply.text
    assert [calls(scripted_server, m) for m in PANEL] == [1, 1, 1, 1]  # 42 vs 41: escalated
    assert calls(scripted_server, JUDGE) == 1  # the exact rule needs no first analysis


def test_a_cascade_is_in_the_trace_metadata_and_the_chat_model_s_cache_key(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    graph = graph_for(scripted_server, {"first": 2, "rule": "numeric"})
    described = {"first": 2, "rule": "numeric", "tolerance": 1e-6, "judge_first": False}
    assert graph.config["metadata"]["fusion_cascade"] == described
    settings: dict[str, Any] = {
        "analysis_models": PANEL,
        "judge_model": JUDGE,
        "base_url": scripted_server.base_url,
        "api_key": "sk-test",
    }
    plain, cascading = ChatFusion(**settings), ChatFusion(**settings, cascade={"first": 3})
    assert "cascade" not in plain._identifying_params
    assert cascading._identifying_params["cascade"]["first"] == 3


def test_the_calling_model_and_the_synthesis_read_why_there_is_no_analysis(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    script(scripted_server, ["42", "42", "1", "2"])
    tool = FusionTool(
        backend=backend_for(scripted_server),
        analysis_models=PANEL,
        judge_model=JUDGE,
        server_tools=[],
        cascade={"first": 2, "rule": "exact"},
    )
    call = {"type": "tool_call", "id": "call_1", "name": "fusion", "args": {"prompt": "6x7?"}}
    content = tool.invoke(call).content
    assert "not needed, the first answers agree (the answers match)" in content
    assert "unknown" not in content
    graph = create_fusion_graph(
        FusionParameters(analysis_models=PANEL, model=JUDGE, tools=[]),
        backend=backend_for(scripted_server),
        cascade={"first": 2, "rule": "exact"},
    )
    assert graph.invoke({"messages": QUESTION})["answer"]
    (synthesis,) = scripted_server.requests_for(JUDGE)  # the judge writes the final answer
    assert "not needed, the first answers agree" in synthesis.body["messages"][-1]["content"]
