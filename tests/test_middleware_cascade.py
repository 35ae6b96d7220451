"""The cascade through `FusionMiddleware`: an agent's deliberation asks the first seats, and
the rest of the panel only when they disagree (calls counted at the scripted server)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from langchain_fusion import FusionMiddleware, FusionResult, OpenAICompatibleBackend
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from langchain_fusion.testing.judges import comparing_judge

PANEL = ["cheap-a", "cheap-b", "dear-c"]
JUDGE = "judge-j"
AGENT = "agent-model"


def agent_for(server: ScriptedOpenAIServer) -> Any:
    middleware = FusionMiddleware(
        analysis_models=PANEL,
        judge_model=JUDGE,
        server_tools=[],
        cascade={"first": 2},
        when="always",
        backend=OpenAICompatibleBackend(
            base_url=server.base_url, api_key=SecretStr("sk-test"), max_retries=0, timeout=10
        ),
    )
    model = ChatOpenAI(
        model=AGENT, base_url=server.base_url, api_key=SecretStr("sk-test"), max_retries=0
    )
    return create_agent(model, tools=[], middleware=[middleware])


def script(server: ScriptedOpenAIServer, answers: list[str]) -> None:
    for model, answer in zip(PANEL, answers, strict=True):
        server.set_script(model, ModelScript(reply=answer))
    server.set_script(JUDGE, ModelScript(json_reply=comparing_judge()))


def calls(server: ScriptedOpenAIServer, model: str) -> int:
    return len(server.requests_for(model))


async def deliberate(agent: Any, path: str) -> FusionResult:
    inputs = {"messages": [HumanMessage("What is 6 times 7?")]}
    final = agent.invoke(inputs) if path == "sync" else await agent.ainvoke(inputs)
    result = final["fusion"]
    assert isinstance(result, FusionResult)
    return result


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_agreeing_first_seats_leave_the_rest_of_the_panel_uncalled(
    scripted_server: ScriptedOpenAIServer, path: str
) -> None:
    script(scripted_server, ["42", "42", "42"])
    result = await deliberate(agent_for(scripted_server), path)
    assert result.cascade is not None
    assert result.cascade.escalated is False
    assert [r.model for r in result.responses] == PANEL[:2]
    assert calls(scripted_server, "dear-c") == 0
    assert calls(scripted_server, JUDGE) == 1


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_disagreeing_first_seats_bring_in_the_whole_panel(
    scripted_server: ScriptedOpenAIServer, path: str
) -> None:
    script(scripted_server, ["42", "41", "42"])
    result = await deliberate(agent_for(scripted_server), path)
    assert result.cascade is not None
    assert result.cascade.escalated is True
    assert sorted(r.model for r in result.responses) == sorted(PANEL)
    assert calls(scripted_server, "dear-c") == 1
    assert calls(scripted_server, JUDGE) == 2
