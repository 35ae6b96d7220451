"""Reliability under faults: deadlines, stragglers, quorum, judge retries, budgets, cancellation."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import SecretStr

from langchain_fusion import (
    ChatFusion,
    FusionParameterError,
    FusionResult,
    FusionTool,
    OpenAICompatibleBackend,
    create_fusion_graph,
)
from langchain_fusion.contract.errors import run_failure_reason
from langchain_fusion.contract.result import FailedModel
from langchain_fusion.graph.budget import BudgetExceededError
from langchain_fusion.limits import FusionLimits, ModelPrice
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

PANEL = ["panel-a", "panel-b", "panel-c"]
JUDGE = "judge-j"
VALID = {
    "consensus": ["they agree"],
    "contradictions": [],
    "partial_coverage": [],
    "unique_insights": [],
    "blind_spots": [],
}


def backend_for(server: ScriptedOpenAIServer, **kwargs: Any) -> OpenAICompatibleBackend:
    settings: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": SecretStr("k"),
        "max_retries": 0,
        "timeout": 10,
    }
    settings.update(kwargs)
    return OpenAICompatibleBackend(**settings)


def graph_for(
    server: ScriptedOpenAIServer, *, panel: list[str] | None = None, **kwargs: Any
) -> Any:
    parameters = {"analysis_models": panel or PANEL, "model": JUDGE, "tools": []}
    parameters.update(kwargs.pop("parameters", {}))
    kwargs.setdefault("synthesize", False)
    return create_fusion_graph(parameters, backend=backend_for(server), **kwargs)


def established_connections(port: int) -> int:
    """TCP connections in this machine's table that touch `port` and are ESTABLISHED."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            ports = {int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)}
            count += state == "01" and port in ports
    return count


# --- straggler policy and deadline -------------------------------------------------------


def test_straggler_is_left_behind_after_the_grace_period(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted_server.set_script("panel-c", ModelScript(time_to_first_token=5))
    graph = graph_for(scripted_server, limits={"min_successful": 2, "straggler_grace": 0.2})
    started = time.monotonic()
    result: FusionResult = graph.invoke({"messages": "q"})["result"]
    assert time.monotonic() - started < 3
    assert [r.model for r in result.responses] == ["panel-a", "panel-b"]
    (straggler,) = result.failed_models
    assert straggler.model == "panel-c"
    assert "straggler policy" in straggler.error
    assert result.degraded
    assert result.model_dump(mode="json")["degraded"] is True
    assert result.analysis is not None
    assert result.status == "ok"


async def test_straggler_call_is_cancelled_and_its_connection_closed(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted_server.set_script("panel-c", ModelScript(hang=True))
    graph = graph_for(scripted_server, limits={"min_successful": 2, "straggler_grace": 0.1})
    result = (await graph.ainvoke({"messages": "q"}))["result"]
    assert [f.model for f in result.failed_models] == ["panel-c"]
    await asyncio.sleep(0.2)
    (hung,) = scripted_server.requests_for("panel-c")
    assert hung.status_code == 0  # never answered: the client went away
    assert len(asyncio.all_tasks()) == 1  # only this test's own task is left


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_hung_panelist_never_holds_the_run_past_its_deadline(
    scripted_server: ScriptedOpenAIServer, mode: str
) -> None:
    scripted_server.set_script("panel-b", ModelScript(hang=True))
    # The deadline leaves the healthy panelist time to answer on a loaded machine; the
    # upper bound is generous: the point is that the hung call does not hold the run.
    graph = graph_for(scripted_server, limits={"deadline": 2.5})
    started = time.monotonic()
    if mode == "sync":
        output = await asyncio.to_thread(graph.invoke, {"messages": "q"})
    else:
        output = await graph.ainvoke({"messages": "q"})
    elapsed = time.monotonic() - started
    assert 2.4 < elapsed < 60
    result = output["result"]
    (hung,) = result.failed_models
    assert hung.model == "panel-b"
    assert "deadline of 2.5 s" in hung.error
    assert [r.model for r in result.responses] == ["panel-a", "panel-c"]


# --- quorum and typed failures ----------------------------------------------------------


def test_fewer_answers_than_the_quorum_fail_the_run(scripted_server: ScriptedOpenAIServer) -> None:
    for model in ["panel-b", "panel-c"]:
        scripted_server.set_script(model, ModelScript(status_code=500))
    graph = graph_for(scripted_server, limits=FusionLimits(min_successful=2))
    result = graph.invoke({"messages": "q"})["result"]
    assert result.status == "error"
    assert result.failure_reason == "quorum_not_met"
    assert "1 of 3 panelists answered" in (result.failure_detail or "")
    assert [r.model for r in result.responses] == ["panel-a"]  # kept, never lost
    assert scripted_server.requests_for(JUDGE) == []


def test_quorum_larger_than_the_panel_is_refused_up_front(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    with pytest.raises(FusionParameterError, match="min_successful = 4"):
        graph_for(scripted_server, limits={"min_successful": 4})
    with pytest.raises(FusionParameterError, match="straggler_grace"):
        graph_for(scripted_server, limits={"straggler_grace": -1})
    assert scripted_server.requests == []


def test_an_unknown_model_is_invalid_model(scripted_server: ScriptedOpenAIServer) -> None:
    scripted_server.set_script("panel-a", ModelScript(status_code=404))
    result = graph_for(scripted_server, panel=["panel-a"]).invoke({"messages": "q"})["result"]
    assert result.failure_reason == "invalid_model"
    # OpenRouter answers an unknown slug with a 400 and this wording, through the SDK:
    openrouter_400 = (
        "BadRequestError: Error code: 400 - {'error': {'message': "
        "'nonsense/model is not a valid model ID', 'code': 400}}"
    )
    other_400 = "BadRequestError: Error code: 400 - {'error': {'message': 'bad messages'}}"
    assert run_failure_reason([FailedModel(model="x", error=openrouter_400, status_code=400)]) == (
        "invalid_model"
    )
    assert run_failure_reason([FailedModel(model="x", error=other_400, status_code=400)]) == (
        "all_panels_failed"
    )


# --- the judge: one retry with the parse error, then the fallback -----------------------


def test_judge_is_retried_once_with_the_parse_error(scripted_server: ScriptedOpenAIServer) -> None:
    def second_time_right(body: dict[str, Any]) -> dict[str, Any] | str:
        told = any("could not be used" in str(m.get("content")) for m in body["messages"])
        return VALID if told else "The panel mostly agrees, I think."

    scripted_server.set_script(JUDGE, ModelScript(json_reply=second_time_right))
    result = graph_for(scripted_server).invoke({"messages": "q"})["result"]
    _first, second = scripted_server.requests_for(JUDGE)
    assert "no JSON object found" in second.body["messages"][-1]["content"]
    assert second.body["messages"][-2] == {
        "role": "assistant",
        "content": "The panel mostly agrees, I think.",
    }
    assert result.analysis is not None
    assert result.failure_reason is None
    assert result.usage.judge.total_tokens > 0


def test_judge_failing_twice_reports_the_real_reason(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted_server.set_script(JUDGE, ModelScript(json_reply="still prose"))
    result = graph_for(scripted_server).invoke({"messages": "q"})["result"]
    assert len(scripted_server.requests_for(JUDGE)) == 2
    assert result.failure_reason == "judge_not_valid_json"
    assert "still prose" in (result.failure_detail or "")


@pytest.mark.parametrize(
    "judge_script", [ModelScript(status_code=500), ModelScript(json_reply="x")]
)
def test_the_fallback_judge_is_asked_next(
    scripted_server: ScriptedOpenAIServer, judge_script: ModelScript
) -> None:
    scripted_server.set_script(JUDGE, judge_script)
    graph = graph_for(scripted_server, fallback_judge="judge-backup")
    result = graph.invoke({"messages": "q"})["result"]
    assert len(scripted_server.requests_for("judge-backup")) == 1
    assert result.analysis is not None
    assert result.failure_reason is None
    assert set(result.usage.by_model) >= {JUDGE, "judge-backup"}


# --- budgets ------------------------------------------------------------------------------


def test_a_run_that_could_exceed_the_token_budget_is_refused_before_any_call(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    graph = graph_for(
        scripted_server,
        parameters={"max_completion_tokens": 500},
        limits={"max_total_tokens": 2_000},
    )
    with pytest.raises(
        BudgetExceededError, match=r"up to 5 calls, .* tokens, over max_total_tokens=2000"
    ):
        graph.invoke({"messages": "q"})
    assert scripted_server.requests == []


def test_a_budget_needs_bounded_calls_and_known_prices(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    # Every call is bounded (max_completion_tokens defaults to 16 000, as hosted): the
    # worst case of a small budget is refused with its estimate.
    with pytest.raises(BudgetExceededError, match=r"output = \d+ tokens, over max_total_tokens"):
        graph_for(scripted_server, limits={"max_total_tokens": 10_000}).invoke({"messages": "q"})
    graph = graph_for(
        scripted_server, parameters={"max_completion_tokens": 100}, limits={"max_cost": 1.0}
    )
    with pytest.raises(BudgetExceededError, match="needs a price for every model"):
        graph.invoke({"messages": "q"})
    assert scripted_server.requests == []


def test_a_run_within_its_estimate_runs(scripted_server: ScriptedOpenAIServer) -> None:
    prices = {m: ModelPrice(prompt=1e-6, completion=2e-6) for m in [*PANEL, JUDGE]}
    graph = graph_for(
        scripted_server,
        parameters={"max_completion_tokens": 100},
        limits={"max_cost": 0.05, "max_total_tokens": 50_000, "prices": prices},
    )
    result = graph.invoke({"messages": "q"})["result"]
    assert result.analysis is not None


def test_no_new_call_starts_once_the_budget_is_spent(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    # The estimate uses the configured (cheap) prices; the backend then reports far higher
    # costs: the guard during the run stops before the judge.
    for model in PANEL:
        scripted_server.set_script(model, ModelScript(cost_per_token=0.01))
    prices = {m: ModelPrice(prompt=1e-7, completion=1e-7) for m in [*PANEL, JUDGE]}
    graph = graph_for(
        scripted_server,
        parameters={"max_completion_tokens": 100},
        limits={"max_cost": 0.10, "prices": prices},
    )
    result = graph.invoke({"messages": "q"})["result"]
    # Panelists that had not started when the first answer spent the budget never start.
    assert result.responses
    assert len(result.responses) + len(result.failed_models) == 3
    assert all("budget spent" in f.error for f in result.failed_models)
    assert len(scripted_server.requests) == len(result.responses)
    assert scripted_server.requests_for(JUDGE) == []
    assert result.failure_reason == "budget_exceeded"
    assert "budget spent" in (result.failure_detail or "")
    assert result.usage.panel.cost is not None
    assert result.usage.panel.cost > 0.10


# --- cancellation -------------------------------------------------------------------------


async def test_cancelling_the_caller_cancels_every_inner_call(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    for model in PANEL:
        scripted_server.set_script(model, ModelScript(hang=True))
    port = int(scripted_server.base_url.rsplit(":", 1)[1].split("/")[0])
    backend = backend_for(scripted_server)
    graph = create_fusion_graph(
        {"analysis_models": PANEL, "model": JUDGE, "tools": []}, backend=backend
    )
    task = asyncio.create_task(graph.ainvoke({"messages": "q"}))
    while len(scripted_server.requests) < 3:  # noqa: ASYNC110 (the log fills in another thread)
        await asyncio.sleep(0.02)
    assert established_connections(port) >= 6  # both ends of three connections
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)
    assert len(asyncio.all_tasks()) == 1
    await backend.aclose()
    await asyncio.sleep(0.1)
    assert established_connections(port) == 0
    assert all(r.status_code == 0 for r in scripted_server.requests)


async def test_the_tool_reports_cancelled_on_the_progress_stream(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted_server.set_script("panel-a", ModelScript(hang=True))
    tool = FusionTool(
        analysis_models=["panel-a"],
        judge_model=JUDGE,
        server_tools=[],
        backend=backend_for(scripted_server),
    )

    async def cancel_the_tool(state: MessagesState) -> dict[str, Any]:
        # The node (the tool's caller) gives up on the deliberation half-way.
        task = asyncio.create_task(tool.ainvoke({"prompt": "q"}))
        while not scripted_server.requests_for("panel-a"):  # noqa: ASYNC110 (another thread)
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return {}

    builder = StateGraph(MessagesState)
    builder.add_node("call", cancel_the_tool)
    builder.add_edge(START, "call")
    builder.add_edge("call", END)
    seen = [e async for e in builder.compile().astream({"messages": []}, stream_mode="custom")]
    kinds = [e["type"] for e in seen]
    assert kinds[0] == "fusion_call.in_progress"
    assert kinds[-1] == "fusion_call.completed"
    assert seen[-1]["result"]["failure_reason"] == "cancelled"
    assert seen[-1]["result"]["status"] == "error"


# --- conversation control -------------------------------------------------------------------


def test_max_invocations_stops_deliberating_again(scripted_server: ScriptedOpenAIServer) -> None:
    tool = FusionTool(
        analysis_models=["panel-a"],
        judge_model=JUDGE,
        server_tools=[],
        max_invocations=1,
        backend=backend_for(scripted_server),
    )
    earlier = [
        HumanMessage("first question"),
        AIMessage("", tool_calls=[{"name": "fusion", "args": {"prompt": "first"}, "id": "c1"}]),
        ToolMessage("Fusion deliberation: ok ...", tool_call_id="c1", name="fusion"),
        AIMessage("Here is what the panel said."),
    ]
    first = tool.invoke(
        {
            "type": "tool_call",
            "id": "c0",
            "name": "fusion",
            "args": {"prompt": "q", "messages": earlier[:1]},
        }
    )
    assert isinstance(first.artifact, FusionResult)
    calls_before = len(scripted_server.requests)
    again = tool.invoke(
        {
            "type": "tool_call",
            "id": "c2",
            "name": "fusion",
            "args": {"prompt": "q2", "messages": earlier},
        }
    )
    assert "already run 1 time(s)" in again.content
    assert again.artifact is None
    assert len(scripted_server.requests) == calls_before  # nothing was called


def test_chat_fusion_counts_its_own_earlier_answers(scripted_server: ScriptedOpenAIServer) -> None:
    llm = ChatFusion(
        analysis_models=["panel-a"],
        judge_model=JUDGE,
        outer_model="outer-o",
        server_tools=[],
        tool_choice="required",
        max_invocations=1,
        base_url=scripted_server.base_url,
        api_key="k",
        max_retries=0,
    )
    first = llm.invoke("Is it safe?")
    assert "fusion_result" in first.response_metadata
    scripted_server.reset()
    second = llm.invoke([HumanMessage("Is it safe?"), first, HumanMessage("And now?")])
    assert scripted_server.requests_for("panel-a") == []
    (outer,) = scripted_server.requests_for("outer-o")
    assert "already run 1 time(s)" in json.dumps(outer.body)
    assert second.content
