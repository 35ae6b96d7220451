"""What each panelist and the analyst spent, and a panelist's research steps, on every
progress path: LangGraph's custom stream (stream, astream), `ChatFusion` and `FusionTool`
callbacks (invoke, ainvoke, stream, astream), and the gateway's Responses stream (checked
against the hosted schema, and parsed by the official Python and TypeScript SDKs)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import httpx
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tools import tool
from openrouter import OpenRouter
from openrouter.components.streamevents import UnknownStreamEvents
from test_server_openrouter_sdk import SCRIPT as SDK_SCRIPT
from test_server_openrouter_sdk import _node_sdk as node_sdk
from test_server_support import QUALITY_JUDGE, settings, start
from wire_schema import sse_events

from langchain_fusion import FusionResult
from langchain_fusion.contract import events as ev
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from tests.test_chat_fusion import CALLS_FUSION, OUTER, QUESTION, chat
from tests.test_graph_scripted import JUDGE, graph_for
from tests.test_tool import fusion_tool, tool_call

RATE = {"panel-a": 1e-6, "panel-b": 3e-6, JUDGE: 5e-6}
"""USD per token each model reports (`usage.cost`), as OpenRouter does."""
QUERY = "tram ridership 2024"


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return f"notes for {query}"


def researching(**fields: Any) -> ModelScript:
    """A panelist that takes one research step (`lookup`) on its first turn."""
    return ModelScript(tool_calls=[{"name": "lookup", "arguments": {"query": QUERY}}], **fields)


def scripted(server: ScriptedOpenAIServer, *, failing_b: bool = False) -> None:
    """panel-a researches once then answers; panel-b answers (or researches, then answers
    nothing: a failure after two billed calls); every model reports its cost."""
    server.set_script("panel-a", researching(cost_per_token=RATE["panel-a"]))
    b = (
        researching(reply=lambda body: "", cost_per_token=RATE["panel-b"])
        if failing_b
        else ModelScript(cost_per_token=RATE["panel-b"])
    )
    server.set_script("panel-b", b)
    server.set_script(JUDGE, ModelScript(cost_per_token=RATE[JUDGE]))
    server.set_script(OUTER, ModelScript(cost_per_token=RATE[JUDGE]))


def by_type(seen: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in seen if event["type"] == kind]


def check_events(seen: list[dict[str, Any]], result: FusionResult, *, failing_b: bool) -> None:
    """The usage on each event is the result's, per model; the research step is announced
    before its panelist's answer, with its tool and query."""
    usage = result.usage
    (a_done,) = [e for e in by_type(seen, ev.PANEL_COMPLETED) if e["model"] == "panel-a"]
    assert a_done["usage"] == usage.by_model["panel-a"].model_dump()
    assert a_done["usage"]["cost"] == pytest.approx(a_done["usage"]["total_tokens"] * 1e-6)
    if failing_b:
        (b_failed,) = by_type(seen, ev.PANEL_FAILED)
        assert b_failed["error"] == "empty completion"
        assert b_failed["usage"] == usage.by_model["panel-b"].model_dump()
        assert b_failed["usage"]["total_tokens"] > 0  # two calls billed before it failed
        assert b_failed["usage"]["cost"] == pytest.approx(b_failed["usage"]["total_tokens"] * 3e-6)
    (analysis,) = by_type(seen, ev.ANALYSIS_COMPLETED)
    assert analysis["usage"] == usage.judge.model_dump()
    assert analysis["usage"]["cost"] == pytest.approx(analysis["usage"]["total_tokens"] * 5e-6)
    steps = by_type(seen, ev.PANEL_RESEARCHING)
    assert {e["model"] for e in steps} == ({"panel-a", "panel-b"} if failing_b else {"panel-a"})
    (a_step,) = [e for e in steps if e["model"] == "panel-a"]
    assert a_step["panel_index"] == 0
    assert a_step["research"] == {
        "step": 1,
        "max_steps": 4,
        "tool_calls": [{"name": "lookup", "query": QUERY}],
    }
    assert seen.index(a_step) < seen.index(a_done)


# --- LangGraph's custom stream --------------------------------------------------------------


def research_graph(server: ScriptedOpenAIServer) -> Any:
    panel = ["panel-a", "panel-b"]
    return graph_for(server, panel=panel, synthesize=False, research_tools=[lookup])


def test_the_custom_stream_carries_usage_and_research_steps(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted(scripted_server, failing_b=True)
    graph = research_graph(scripted_server)
    seen = list(graph.stream({"messages": QUESTION}, stream_mode="custom"))
    check_events(seen, FusionResult.model_validate(seen[-1]["result"]), failing_b=True)


async def test_the_custom_stream_carries_usage_and_research_steps_async(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted(scripted_server, failing_b=True)
    graph = research_graph(scripted_server)
    seen = [e async for e in graph.astream({"messages": QUESTION}, stream_mode="custom")]
    check_events(seen, FusionResult.model_validate(seen[-1]["result"]), failing_b=True)


# --- ChatFusion and FusionTool: their callbacks' custom events ------------------------------


class Collect(BaseCallbackHandler):
    """The progress events a run hands its callbacks (`on_custom_event`)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def on_custom_event(
        self, name: str, data: Any, *, run_id: UUID, tags: Any = None, metadata: Any = None
    ) -> None:
        self.seen.append({"type": name, **data})


def _result(seen: list[dict[str, Any]]) -> FusionResult:
    return FusionResult.model_validate(by_type(seen, ev.COMPLETED)[-1]["result"])


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "stream", "astream"])
async def test_chat_fusion_progress_carries_usage_and_research_steps(
    scripted_server: ScriptedOpenAIServer, how: str
) -> None:
    scripted(scripted_server)
    scripted_server.set_script(OUTER, CALLS_FUSION)
    llm = chat(scripted_server, judge_model=JUDGE, research_tools=[lookup])
    collect = Collect()
    config: Any = {"callbacks": [collect]}
    if how == "invoke":
        llm.invoke(QUESTION, config)
    elif how == "ainvoke":
        await llm.ainvoke(QUESTION, config)
    elif how == "stream":
        list(llm.stream(QUESTION, config))
    else:
        [chunk async for chunk in llm.astream(QUESTION, config)]
    check_events(collect.seen, _result(collect.seen), failing_b=False)


@pytest.mark.parametrize("how", ["invoke", "ainvoke"])
async def test_fusion_tool_progress_carries_usage_and_research_steps(
    scripted_server: ScriptedOpenAIServer, how: str
) -> None:
    scripted(scripted_server, failing_b=True)
    tool_ = fusion_tool(scripted_server, research_tools=[lookup])
    collect = Collect()
    config: Any = {"callbacks": [collect]}
    if how == "invoke":
        message = tool_.invoke(tool_call(), config)
    else:
        message = await tool_.ainvoke(tool_call(), config)
    check_events(collect.seen, message.artifact, failing_b=True)


# --- the gateway's Responses stream -----------------------------------------------------------


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[ScriptedOpenAIServer, str]]:
    """A gateway whose panel researches with `lookup` (so: not `server_tools: []`)."""
    with ScriptedOpenAIServer() as upstream:
        model_settings = {**settings(upstream), "research_tools": [lookup]}
        model_settings.pop("server_tools")
        with start(upstream, model_settings=model_settings) as server:
            yield upstream, server.base_url


def stream_responses(base_url: str) -> list[dict[str, Any]]:
    body = {"model": "openrouter/fusion", "input": QUESTION, "stream": True}
    body["tool_choice"] = "required"
    with httpx.stream(
        "POST",
        f"{base_url}/responses",
        json=body,
        headers={"authorization": "Bearer sk-client"},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        text = "".join(response.iter_text())
    events, rest = sse_events(text)
    assert not rest.strip()
    return [json.loads(data) for _, data in events]


def test_the_responses_stream_carries_usage_research_and_the_total_cost(
    gateway: tuple[ScriptedOpenAIServer, str],
) -> None:
    upstream, base_url = gateway
    upstream.reset()
    upstream.set_script("panel-a", researching(cost_per_token=RATE["panel-a"]))
    upstream.set_script("panel-b", ModelScript(cost_per_token=RATE["panel-b"]))
    upstream.set_script(QUALITY_JUDGE, ModelScript(cost_per_token=RATE[JUDGE]))
    upstream.set_script("outer/model-x", ModelScript(cost_per_token=RATE[JUDGE]))
    seen = stream_responses(base_url)
    f = "response.fusion_call."
    (research,) = [e for e in by_type(seen, f"{f}panel.reasoning.delta") if "research" in e]
    assert research["model"] == "panel-a"
    assert research["delta"] == ""  # an unknown client appends nothing to the reasoning
    assert research["research"]["tool_calls"] == [{"name": "lookup", "query": QUERY}]
    completed = {e["model"]: e for e in by_type(seen, f"{f}panel.completed")}
    assert seen.index(research) < seen.index(completed["panel-a"])
    for model, rate in [("panel-a", RATE["panel-a"]), ("panel-b", RATE["panel-b"])]:
        usage = completed[model]["usage"]
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
        assert usage["cost"] == pytest.approx(usage["total_tokens"] * rate)
    (analysis,) = by_type(seen, f"{f}analysis.completed")
    analyst = analysis["usage"]
    assert analyst["cost"] == pytest.approx(analyst["total_tokens"] * RATE[JUDGE])
    (done,) = by_type(seen, "response.completed")
    total = done["response"]["usage"]
    panel = sum(completed[m]["usage"]["total_tokens"] for m in completed)
    outer = total["total_tokens"] - panel - analyst["total_tokens"]
    assert outer > 0  # the outer model's calls: asking for fusion, then the answer
    assert total["cost"] == pytest.approx(
        sum(completed[m]["usage"]["cost"] for m in completed)
        + analyst["cost"]
        + outer * RATE[JUDGE]
    )
    # The official Python SDK parses every one of these events.
    with OpenRouter(api_key="sk-client", server_url=base_url, timeout_ms=30_000) as client:
        parsed = list(
            client.beta.responses.send(
                model="openrouter/fusion", input=QUESTION, tool_choice="required", stream=True
            )
        )
    assert not [e for e in parsed if isinstance(e, UnknownStreamEvents)]
    assert "response.fusion_call.panel.reasoning.delta" in [e.type for e in parsed]


def test_no_cost_on_the_wire_when_the_backend_reports_none(
    gateway: tuple[ScriptedOpenAIServer, str],
) -> None:
    upstream, base_url = gateway
    upstream.reset()
    upstream.set_script("panel-a", ModelScript(cost_per_token=RATE["panel-a"]))
    upstream.set_script("panel-b", ModelScript())  # reports no cost
    seen = stream_responses(base_url)
    completed = {e["model"]: e for e in by_type(seen, "response.fusion_call.panel.completed")}
    assert completed["panel-a"]["usage"]["cost"] > 0
    assert "cost" not in completed["panel-b"]["usage"]
    assert completed["panel-b"]["usage"]["total_tokens"] > 0
    (done,) = by_type(seen, "response.completed")
    assert "cost" not in done["response"]["usage"]  # a partial sum is no cost


def test_the_typescript_sdk_parses_the_research_and_usage_fields(
    gateway: tuple[ScriptedOpenAIServer, str],
) -> None:
    upstream, base_url = gateway
    upstream.reset()
    upstream.set_script("panel-a", researching(cost_per_token=RATE["panel-a"]))
    where = node_sdk()
    shutil.copy(SDK_SCRIPT, where / "client.mjs")
    done = subprocess.run(
        ["node", "client.mjs", base_url, "outer/model-x", json.dumps(["panel-a", "panel-b"])],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "UNKNOWN" not in out["events"]  # an event the SDK's zod schemas refused
    assert "response.fusion_call.panel.reasoning.delta" in out["events"]  # the research step
    assert "response.fusion_call.panel.completed" in out["events"]
    assert any(r.body.get("tools") for r in upstream.requests_for("panel-a"))
