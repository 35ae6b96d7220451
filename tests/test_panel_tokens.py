"""Which runs stream the panel's tokens (`panel.delta`), and that every other progress event
is always emitted: `stream_panel_tokens` (True, False, None: when the caller streams)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage

from langchain_fusion.contract import events as ev
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from tests.test_chat_fusion import CALLS_FUSION, OUTER, QUESTION, chat
from tests.test_graph_scripted import PANEL, chat_requests, conversation, graph_for
from tests.test_tool import AGENT, agent_model, fusion_tool


def kinds(seen: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in seen]


def panel_streamed(server: ScriptedOpenAIServer, panel: list[str]) -> set[bool]:
    return {request.stream for model in panel for request in chat_requests(server, model)}


@pytest.mark.parametrize(("switch", "tokens"), [(None, True), (False, False), (True, True)])
def test_a_graph_streamed_on_custom(
    scripted_server: ScriptedOpenAIServer, switch: bool | None, tokens: bool
) -> None:
    graph = graph_for(scripted_server, synthesize=False, stream_panel_tokens=switch)
    seen = list(graph.stream({"messages": conversation()}, stream_mode="custom"))
    assert (ev.PANEL_DELTA in kinds(seen)) is tokens
    assert panel_streamed(scripted_server, PANEL) == {tokens}
    assert kinds(seen).count(ev.PANEL_COMPLETED) == 3  # the cheap events, always
    assert kinds(seen)[-1] == ev.COMPLETED


def test_a_graph_invoked_streams_no_tokens_unless_switched_on(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    graph_for(scripted_server, synthesize=False).invoke({"messages": conversation()})
    assert panel_streamed(scripted_server, PANEL) == {False}
    scripted_server.reset()
    graph_for(scripted_server, synthesize=False, stream_panel_tokens=True).invoke(
        {"messages": conversation()}
    )
    assert panel_streamed(scripted_server, PANEL) == {True}


@pytest.mark.parametrize(("switch", "tokens"), [(None, False), (True, True)])
async def test_a_tool_in_an_agent(
    scripted_server: ScriptedOpenAIServer, switch: bool | None, tokens: bool
) -> None:
    # Inside someone else's graph nothing public says whether its caller listens: the
    # panel's tokens only when switched on; every other event reaches the agent's stream.
    scripted_server.set_script(
        AGENT, ModelScript(tool_calls=[{"name": "fusion", "arguments": {"prompt": QUESTION}}])
    )
    tool = fusion_tool(scripted_server, stream_panel_tokens=switch)
    agent = create_agent(agent_model(scripted_server), tools=[tool])
    seen = [
        chunk
        async for chunk in agent.astream(
            {"messages": [HumanMessage(QUESTION)]}, stream_mode="custom"
        )
    ]
    assert (ev.PANEL_DELTA in kinds(seen)) is tokens
    assert kinds(seen)[0] == ev.IN_PROGRESS
    assert kinds(seen)[-1] == ev.COMPLETED
    assert panel_streamed(scripted_server, ["panel-a", "panel-b"]) == {tokens}


async def test_a_streamed_chat_fusion_streams_the_panel_and_an_invoked_one_does_not(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted_server.set_script(OUTER, CALLS_FUSION)
    llm = chat(scripted_server)
    seen = [e async for e in llm.astream_events(QUESTION, version="v2")]
    custom = [e["name"] for e in seen if e["event"] == "on_custom_event"]
    assert ev.PANEL_DELTA in custom
    assert custom[-1] == ev.COMPLETED
    assert panel_streamed(scripted_server, ["panel-a", "panel-b"]) == {True}
    scripted_server.reset()
    await llm.ainvoke(QUESTION)
    assert panel_streamed(scripted_server, ["panel-a", "panel-b"]) == {False}
    scripted_server.reset()
    quiet = [
        e
        async for e in chat(scripted_server, stream_panel_tokens=False).astream_events(
            QUESTION, version="v2"
        )
    ]
    assert ev.PANEL_DELTA not in [e["name"] for e in quiet if e["event"] == "on_custom_event"]
    # (LangChain itself streams every chat model under `astream_events`: the inner calls
    # streamed anyway; what the switch turns off is the events.)
