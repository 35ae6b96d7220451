"""Honest flow control and per-run state (issue 12).

A failed quorum, a spent budget or a passed deadline stops the run from spending more; an
abandoned panelist makes no further call and emits nothing after its `panel.failed`; a run
keeps its state to itself and leaves nothing behind when cancelled; a bug surfaces.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.tools import tool

from langchain_fusion import create_fusion_graph
from langchain_fusion.contract import events as ev
from langchain_fusion.graph.context import FusionContext, RunClock
from langchain_fusion.limits import ModelPrice
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from tests.test_reliability import JUDGE, PANEL, backend_for

QUESTION = "What limits the range of electric cars?"
OUTER = "outer-o"


def graph_for(server: ScriptedOpenAIServer, **kwargs: Any) -> Any:
    parameters = {"analysis_models": PANEL, "model": JUDGE, "tools": []}
    parameters.update(kwargs.pop("parameters", {}))
    return create_fusion_graph(parameters, backend=backend_for(server), **kwargs)


async def run(graph: Any, mode: str) -> dict[str, Any]:
    request = {"messages": [HumanMessage(QUESTION)]}
    if mode == "ainvoke":
        return await graph.ainvoke(request)  # type: ignore[no-any-return]
    return graph.invoke(request)  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_a_failed_quorum_calls_neither_judge_nor_synthesis(
    scripted_server: ScriptedOpenAIServer, mode: str
) -> None:
    for model in PANEL[1:]:
        scripted_server.set_script(model, ModelScript(status_code=503))
    graph = graph_for(scripted_server, outer_model=OUTER, limits={"min_successful": 2})
    output = await run(graph, mode)
    result = output["result"]
    assert result.status == "error"
    assert result.failure_reason == "quorum_not_met"
    assert scripted_server.requests_for(JUDGE) == []
    assert scripted_server.requests_for(OUTER) == []  # no billed synthesis either
    assert output.get("answer") is None


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_a_budget_spent_in_the_panel_is_budget_exceeded(
    scripted_server: ScriptedOpenAIServer, mode: str
) -> None:
    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        return f"notes on {query}"

    # Every panelist researches first; the backend reports a cost far above the prices
    # the estimate used, so the first step of each spends the whole budget.
    for model in PANEL:
        scripted_server.set_script(
            model,
            ModelScript(
                tool_calls=[{"name": "lookup", "arguments": {"query": "x"}}],
                tool_policy="always",
                cost_per_token=0.05,
            ),
        )
    prices = {m: ModelPrice(prompt=1e-7, completion=1e-7) for m in [*PANEL, JUDGE, OUTER]}
    graph = graph_for(
        scripted_server,
        parameters={"tools": [{"type": "openrouter:web_fetch"}], "max_completion_tokens": 50},
        research_tools=[lookup],
        outer_model=OUTER,
        limits={"max_cost": 0.5, "prices": prices},
    )
    result = (await run(graph, mode))["result"]
    assert result.responses == []
    assert result.failure_reason == "budget_exceeded"
    assert scripted_server.requests_for(JUDGE) == []
    assert scripted_server.requests_for(OUTER) == []


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_nothing_is_called_after_the_deadline(
    scripted_server: ScriptedOpenAIServer, mode: str
) -> None:
    scripted_server.set_script(PANEL[2], ModelScript(hang=True))
    # 2.5 s leaves the healthy panelists time to answer on a loaded machine.
    graph = graph_for(scripted_server, outer_model=OUTER, limits={"deadline": 2.5})
    result = (await run(graph, mode))["result"]
    assert [f.model for f in result.failed_models] == [PANEL[2]]
    assert result.failure_reason == "deadline_exceeded"
    assert result.analysis is None
    assert [r.model for r in result.responses] == PANEL[:2]  # kept for the outer model
    assert scripted_server.requests_for(JUDGE) == []
    assert scripted_server.requests_for(OUTER) == []


def test_an_abandoned_sync_panelist_goes_quiet(scripted_server: ScriptedOpenAIServer) -> None:
    """After its deadline a sync panelist streams no more deltas and makes no more calls,
    though its thread cannot be interrupted mid-read."""

    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        return f"notes on {query}"

    slow = PANEL[2]
    scripted_server.set_script(
        slow,
        ModelScript(
            tool_calls=[{"name": "lookup", "arguments": {"query": "x"}}],
            tool_policy="always",
            time_to_first_token=0.4,
        ),
    )
    scripted_server.set_script(JUDGE, ModelScript(time_to_first_token=1.5))
    graph = graph_for(
        scripted_server,
        parameters={"tools": [{"type": "openrouter:web_fetch"}], "max_tool_calls": 6},
        research_tools=[lookup],
        limits={"straggler_grace": 0.3},
        synthesize=False,
    )
    failed_at: float | None = None
    after_failure: list[dict[str, Any]] = []
    for event in graph.stream({"messages": [HumanMessage(QUESTION)]}, stream_mode="custom"):
        if failed_at is not None and event.get("model") == slow:
            after_failure.append(event)
        if event["type"] == ev.PANEL_FAILED and event["model"] == slow:
            failed_at = time.monotonic()
    assert failed_at is not None
    time.sleep(1.0)  # a zombie would go on calling its model and its tools meanwhile
    assert after_failure == []
    calls = scripted_server.requests_for(slow)
    assert calls
    assert all(call.received_at <= failed_at for call in calls)


async def test_cancelled_runs_leave_no_state_behind(scripted_server: ScriptedOpenAIServer) -> None:
    for model in PANEL:
        scripted_server.set_script(model, ModelScript(hang=True))
    graph = graph_for(scripted_server)
    tasks = [
        asyncio.ensure_future(graph.ainvoke({"messages": [HumanMessage(QUESTION)]}))
        for _ in range(20)
    ]
    await until(lambda: len(scripted_server.requests) >= 20 * len(PANEL))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    del tasks, task

    def left_behind() -> list[Any]:
        """This graph's per-run state still alive (other tests' sync panelists may still
        sit in a socket read: theirs is not counted)."""
        gc.collect()
        return [
            o
            for o in gc.get_objects()
            if (isinstance(o, FusionContext) and o.setup is graph.setup)
            or (isinstance(o, RunClock) and o.limits is graph.setup.limits)
        ]

    # The HTTP stack lets go of a cancelled request's frames (and so of the run's context)
    # once it has closed the connection; no registry keeps anything.
    await until(lambda: not left_behind(), attempts=500)


async def until(condition: Any, attempts: int = 400) -> None:
    """Yield to the loop until `condition()` holds (bounded)."""
    for _ in range(attempts):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


class BrokenModel(GenericFakeChatModel):
    """A panel model whose code has a bug."""

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_a_programming_error_surfaces(
    scripted_server: ScriptedOpenAIServer, mode: str
) -> None:
    broken = BrokenModel(messages=iter([]))
    graph = create_fusion_graph(
        {"model": JUDGE, "tools": []},
        panel=[broken, PANEL[0]],
        backend=backend_for(scripted_server),
        synthesize=False,
    )
    with pytest.raises(TypeError, match="unsupported operand"):
        await run(graph, mode)
