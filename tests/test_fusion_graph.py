"""`FusionGraph`: the compiled deliberation graph, a LangGraph `Pregel` whose every run gets
a fresh `FusionContext` (clock, ledger) when the caller gives none.

It stays a `CompiledStateGraph` (LangGraph's server serves only `Pregel` instances, and a
run's stream modes are visible only to `Pregel.stream`); it is rebuilt from a compiled
graph's attributes exactly as LangGraph's own `copy()` and `with_config()` rebuild a graph.
The first test fails loudly if LangGraph ever stops working that way.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel
from pydantic import SecretStr

from langchain_fusion import FusionParameters, OpenAICompatibleBackend, create_fusion_graph
from langchain_fusion.graph import FusionGraph
from langchain_fusion.limits import FusionLimits, ModelPrice
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

PANEL = ["panel-a", "panel-b"]
JUDGE = "judge-j"
QUESTION = {"messages": [("user", "Why is the sky blue?")]}


def graph_for(server: ScriptedOpenAIServer, **options: Any) -> FusionGraph:
    backend = OpenAICompatibleBackend(
        base_url=server.base_url, api_key=SecretStr("k"), max_retries=0, timeout=10
    )
    parameters = FusionParameters(analysis_models=PANEL, model=JUDGE, tools=[])
    return create_fusion_graph(parameters, backend=backend, synthesize=False, **options)


def test_a_compiled_graph_is_rebuilt_from_its_attributes(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    graph = graph_for(scripted_server)
    assert isinstance(graph, Pregel)
    assert isinstance(graph, CompiledStateGraph)
    # `FusionGraph.of` passes a compiled graph's attributes to the constructor, as
    # `Pregel.copy` does: every one must still be a constructor keyword.
    accepted = inspect.signature(Pregel.__init__).parameters
    assert all(name in accepted for name in ("nodes", "channels", "input_channels", "config"))
    rebuilt = CompiledStateGraph(**{k: v for k, v in vars(graph).items() if k != "setup"})
    assert (
        set(rebuilt.nodes)
        == set(graph.nodes)
        == {
            "__start__",
            "start",
            "panelist",
            "quorum",
            "judge",
            "conclude",
        }
    )
    assert rebuilt.get_graph().to_json() == graph.get_graph().to_json()
    # LangGraph's copies keep the class and the set-up.
    for copy in (graph.copy(), graph.with_config(tags=["mine"])):
        assert type(copy) is FusionGraph
        assert copy.setup is graph.setup
    assert graph.with_config(tags=["mine"]).config["tags"] == ["fusion", "mine"]


def test_every_run_gets_its_own_clock_and_ledger(scripted_server: ScriptedOpenAIServer) -> None:
    for model in PANEL:
        scripted_server.set_script(model, ModelScript(cost_per_token=0.01))
    # One run's panel spends past max_cost: its judge is not called. A shared ledger would
    # stop the next run's panel before any call.
    prices = {m: ModelPrice(prompt=1e-7, completion=1e-7) for m in [*PANEL, JUDGE]}
    graph = graph_for(scripted_server, limits=FusionLimits(max_cost=0.05, prices=prices))
    first = graph.invoke(QUESTION)["result"]
    assert first.failure_reason == "budget_exceeded"
    assert scripted_server.requests_for(JUDGE) == []
    before = sum(len(scripted_server.requests_for(model)) for model in PANEL)
    second = graph.invoke(QUESTION)["result"]
    assert second.failure_reason == "budget_exceeded"
    # The second run's panel was called afresh and answered. How many seats it reached
    # depends on which finished first: the budget stops the run at the first one past it.
    assert sum(len(scripted_server.requests_for(model)) for model in PANEL) > before
    assert second.responses


def test_batch_and_abatch_run_each_input_on_its_own_context(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    graph = graph_for(scripted_server)
    outputs = graph.batch([QUESTION, QUESTION])
    assert [o["result"].failure_reason for o in outputs] == [None, None]
    assert len(scripted_server.requests_for(JUDGE)) == 2


async def test_abatch_runs_each_input_on_its_own_context(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    graph = graph_for(scripted_server)
    outputs = await graph.abatch([QUESTION, QUESTION])
    assert [o["result"].failure_reason for o in outputs] == [None, None]
    assert len(scripted_server.requests_for(JUDGE)) == 2


@pytest.mark.parametrize("mode", ["custom", ["updates", "custom"]])
def test_a_run_streaming_custom_gets_panel_tokens(
    scripted_server: ScriptedOpenAIServer, mode: Any
) -> None:
    graph = graph_for(scripted_server)
    context = graph.new_context(stream_mode=mode)
    assert context.stream_tokens
    assert not graph.new_context(stream_mode="values").stream_tokens
    assert graph.new_context().clock is not context.clock
