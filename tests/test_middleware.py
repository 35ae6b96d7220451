"""FusionMiddleware: fusion in `create_agent`, once a turn, with the result in the state.

Every agent here runs a real `ChatOpenAI` against the strict scripted server, next to a
user tool, so the transcripts the middleware builds are ones a provider accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRequest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import SecretStr

from langchain_fusion import FusionMiddleware, FusionResult, FusionTool, OpenAICompatibleBackend
from langchain_fusion.contract import events as ev
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

PANEL = ["panel-a", "panel-b"]
JUDGE = "judge-j"
AGENT = "agent-model"
QUESTION = "Should we shard the database or scale vertically?"
FUSION_CALL = {"name": "fusion", "arguments": {"prompt": QUESTION}}
WEATHER_CALL = {"name": "get_weather", "arguments": {"city": "Oslo"}}


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}, 21C"


def backend_for(server: ScriptedOpenAIServer) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        base_url=server.base_url, api_key=SecretStr("sk-test"), max_retries=0, timeout=10
    )


def model_for(server: ScriptedOpenAIServer, name: str = AGENT) -> ChatOpenAI:
    return ChatOpenAI(
        model=name, base_url=server.base_url, api_key=SecretStr("sk-test"), max_retries=0
    )


def middleware_for(server: ScriptedOpenAIServer, **kwargs: Any) -> FusionMiddleware:
    return FusionMiddleware(
        analysis_models=PANEL, judge_model=JUDGE, backend=backend_for(server), **kwargs
    )


def agent_for(server: ScriptedOpenAIServer, *middleware: Any, **kwargs: Any) -> Any:
    return create_agent(
        model_for(server), tools=[get_weather], middleware=list(middleware), **kwargs
    )


def offered(request: Any) -> list[str]:
    return [t["function"]["name"] for t in request.body.get("tools") or []]


def deliberations(server: ScriptedOpenAIServer) -> int:
    """How many times the panel was asked (each panelist once per deliberation)."""
    counts = {len(server.requests_for(model)) for model in PANEL}
    assert len(counts) == 1, counts
    return counts.pop()


def run(agent: Any, inputs: dict[str, Any], *, mode: str, **config: Any) -> tuple[Any, list[Any]]:
    """The final state and the custom events, by one of the four paths."""
    custom: list[Any] = []
    if mode == "invoke":
        return agent.invoke(inputs, config or None), custom
    final: Any = None
    for kind, chunk in agent.stream(inputs, config or None, stream_mode=["custom", "values"]):
        if kind == "custom":
            custom.append(chunk)
        else:
            final = chunk
    return final, custom


async def arun(
    agent: Any, inputs: dict[str, Any], *, mode: str, **config: Any
) -> tuple[Any, list[Any]]:
    custom: list[Any] = []
    if mode == "invoke":
        return await agent.ainvoke(inputs, config or None), custom
    final: Any = None
    async for kind, chunk in agent.astream(
        inputs, config or None, stream_mode=["custom", "values"]
    ):
        if kind == "custom":
            custom.append(chunk)
        else:
            final = chunk
    return final, custom


def assert_progress(custom: list[Any]) -> None:
    kinds = [event["type"] for event in custom]
    assert kinds[0] == ev.IN_PROGRESS
    assert kinds[-1] == ev.COMPLETED
    assert kinds.count(ev.PANEL_COMPLETED) == len(PANEL)


def assert_model_decided_turn(server: ScriptedOpenAIServer, final: Any) -> None:
    """The model called fusion and the user's tool; fusion ran once, its result is in the
    state, and the model's next call was offered the user's tool only."""
    result = final["fusion"]
    assert isinstance(result, FusionResult)
    assert result.status == "ok"
    assert [r.model for r in result.responses] == PANEL
    assert deliberations(server) == 1
    first, second = server.requests_for(AGENT)
    assert set(offered(first)) == {"fusion", "get_weather"}
    assert offered(second) == ["get_weather"]
    answers = {m.name: m for m in final["messages"] if isinstance(m, ToolMessage)}
    assert answers["get_weather"].content == "Sunny in Oslo, 21C"
    assert answers["fusion"].content.startswith("Fusion deliberation: ok")
    assert isinstance(final["messages"][-1], AIMessage)
    assert final["messages"][-1].content == second.response_text


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_the_model_decides_next_to_a_user_tool(
    scripted_server: ScriptedOpenAIServer, mode: str
) -> None:
    scripted_server.set_script(AGENT, ModelScript(tool_calls=[FUSION_CALL, WEATHER_CALL]))
    agent = agent_for(scripted_server, middleware_for(scripted_server))
    final, custom = run(agent, {"messages": [HumanMessage(QUESTION)]}, mode=mode)
    assert_model_decided_turn(scripted_server, final)
    if mode == "stream":
        assert_progress(custom)


@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_the_model_decides_async(scripted_server: ScriptedOpenAIServer, mode: str) -> None:
    scripted_server.set_script(AGENT, ModelScript(tool_calls=[FUSION_CALL, WEATHER_CALL]))
    agent = agent_for(scripted_server, middleware_for(scripted_server))
    final, custom = await arun(agent, {"messages": [HumanMessage(QUESTION)]}, mode=mode)
    assert_model_decided_turn(scripted_server, final)
    if mode == "stream":
        assert_progress(custom)


def test_a_second_call_in_the_same_message_is_capped(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted_server.set_script(AGENT, ModelScript(tool_calls=[FUSION_CALL, FUSION_CALL]))
    final = agent_for(scripted_server, middleware_for(scripted_server)).invoke(
        {"messages": [HumanMessage(QUESTION)]}
    )
    assert deliberations(scripted_server) == 1
    ran, capped = (m for m in final["messages"] if isinstance(m, ToolMessage))
    assert ran.content.startswith("Fusion deliberation: ok")
    assert "failure_reason=fusion_invocation_capped" in capped.content
    assert final["fusion"] is ran.artifact  # the state holds the one that ran


class SecondStepModel(AgentMiddleware):
    """Sends the agent's later model calls to other scripted models (public
    `request.override`), so that a test can script each step of one turn."""

    def __init__(self, server: ScriptedOpenAIServer, names: list[str]) -> None:
        super().__init__()
        self.models = [model_for(server, name) for name in names]
        self.calls = 0

    def _next(self, request: ModelRequest) -> ModelRequest:
        self.calls += 1
        if self.calls == 1:
            return request
        return request.override(model=self.models[min(self.calls - 2, len(self.models) - 1)])

    def wrap_model_call(self, request: ModelRequest, handler: Callable[..., Any]) -> Any:
        return handler(self._next(request))

    async def awrap_model_call(self, request: ModelRequest, handler: Callable[..., Any]) -> Any:
        return await handler(self._next(request))


@pytest.mark.parametrize("offer_again", [False, True])
async def test_a_second_call_in_a_later_step_is_capped(
    scripted_server: ScriptedOpenAIServer, offer_again: bool
) -> None:
    """Step 1 deliberates; step 2's model calls fusion again (offered or not); step 3
    answers. The second call costs nothing and the state keeps the first result."""
    scripted_server.set_script(AGENT, ModelScript(tool_calls=[FUSION_CALL]))
    scripted_server.set_script("again", ModelScript(tool_calls=[FUSION_CALL], tool_policy="always"))
    fusion = middleware_for(scripted_server, offer_again_in_turn=offer_again)
    # The router sits inside fusion's wrapper (later in the list): it sees fusion's choice.
    agent = agent_for(scripted_server, fusion, SecondStepModel(scripted_server, ["again", "last"]))
    final = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]}, {"recursion_limit": 12})
    assert deliberations(scripted_server) == 1
    (again,) = scripted_server.requests_for("again")
    assert ("fusion" in offered(again)) is offer_again
    first, second = (m for m in final["messages"] if isinstance(m, ToolMessage))
    assert first.content.startswith("Fusion deliberation: ok")
    assert "failure_reason=fusion_invocation_capped" in second.content
    assert final["fusion"] is first.artifact
    (last,) = scripted_server.requests_for("last")
    assert final["messages"][-1].content == last.response_text


def assert_deliberated_before_the_model(server: ScriptedOpenAIServer, final: Any) -> None:
    assert deliberations(server) == 1
    (answer,) = server.requests_for(AGENT)  # no outer call only to choose the tool
    assert offered(answer) == ["get_weather"]
    call, result = answer.body["messages"][-2:]
    assert call["role"] == "assistant"
    assert call["tool_calls"][0]["function"]["name"] == "fusion"
    assert result["role"] == "tool"
    assert result["content"].startswith("Fusion deliberation: ok")
    assert isinstance(final["fusion"], FusionResult)
    assert final["messages"][-1].content == answer.response_text


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_always_deliberates_before_the_model_answers(
    scripted_server: ScriptedOpenAIServer, mode: str
) -> None:
    agent = agent_for(scripted_server, middleware_for(scripted_server, when="always"))
    final, custom = run(agent, {"messages": [HumanMessage(QUESTION)]}, mode=mode)
    assert_deliberated_before_the_model(scripted_server, final)
    if mode == "stream":
        assert_progress(custom)


@pytest.mark.parametrize("mode", ["invoke", "stream"])
async def test_always_async(scripted_server: ScriptedOpenAIServer, mode: str) -> None:
    agent = agent_for(scripted_server, middleware_for(scripted_server, when="always"))
    final, custom = await arun(agent, {"messages": [HumanMessage(QUESTION)]}, mode=mode)
    assert_deliberated_before_the_model(scripted_server, final)
    if mode == "stream":
        assert_progress(custom)


def test_always_once_per_user_turn_even_when_the_model_uses_tools(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted_server.set_script(AGENT, ModelScript(tool_calls=[WEATHER_CALL], tool_policy="always"))
    agent = agent_for(
        scripted_server,
        middleware_for(scripted_server, when="always"),
        SecondStepModel(scripted_server, ["last"]),
    )
    final = agent.invoke({"messages": [HumanMessage(QUESTION)]})
    assert deliberations(scripted_server) == 1  # not again before the second model call
    (last,) = scripted_server.requests_for("last")
    tool_results = [m["content"] for m in last.body["messages"] if m["role"] == "tool"]
    assert len(tool_results) == 2
    assert tool_results[0].startswith("Fusion deliberation: ok")
    assert tool_results[1] == "Sunny in Oslo, 21C"
    assert isinstance(final["fusion"], FusionResult)


def test_a_function_decides_per_turn_and_the_state_shows_this_turns_result(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    seen: list[int] = []

    def hard_questions(state: Any) -> bool:
        seen.append(len(state["messages"]))
        return "shard" in state["messages"][-1].text

    agent = agent_for(
        scripted_server,
        middleware_for(scripted_server, when=hard_questions),
        checkpointer=InMemorySaver(),
    )
    thread = {"configurable": {"thread_id": "t1"}}
    first = agent.invoke({"messages": [HumanMessage("Hello there")]}, thread)
    assert deliberations(scripted_server) == 0
    assert first.get("fusion") is None
    assert offered(scripted_server.requests_for(AGENT)[0]) == ["get_weather"]

    second = agent.invoke({"messages": [HumanMessage(QUESTION)]}, thread)
    assert deliberations(scripted_server) == 1
    assert isinstance(second["fusion"], FusionResult)

    third = agent.invoke({"messages": [HumanMessage("Thanks!")]}, thread)
    assert deliberations(scripted_server) == 1
    assert third["fusion"] is None  # an earlier turn's result is not this turn's
    assert seen == [1, 3, 7]  # asked once per model call of an undeliberated turn


def test_fusion_keywords_are_validated_as_fusion_tool_validates_them(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    with pytest.raises(ValueError, match=r"temperature = 3\.0.*0 to 2"):
        middleware_for(scripted_server, temperature=3.0)
    with pytest.raises(TypeError, match="did you mean `analysis_models`"):
        FusionMiddleware(analysis_model=PANEL)  # did you mean analysis_models
    with pytest.raises(ValueError, match="when must be"):
        middleware_for(scripted_server, when="sometimes")
    ready = FusionTool(
        analysis_models=PANEL, judge_model=JUDGE, backend=backend_for(scripted_server)
    )
    assert FusionMiddleware(tool=ready).tools == [ready]
    with pytest.raises(TypeError, match="not both"):
        FusionMiddleware(tool=ready, preset="general-fast")
    assert scripted_server.requests == []


def test_a_failed_deliberation_reaches_the_model_and_the_state(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    for model in PANEL:
        scripted_server.set_script(model, ModelScript(status_code=429))
    scripted_server.set_script(AGENT, ModelScript(tool_calls=[FUSION_CALL]))
    final = agent_for(scripted_server, middleware_for(scripted_server)).invoke(
        {"messages": [HumanMessage(QUESTION)]}
    )
    assert final["fusion"].failure_reason == "rate_limited"
    second = scripted_server.requests_for(AGENT)[-1]
    assert "failure_reason=rate_limited" in second.body["messages"][-1]["content"]
    assert offered(second) == ["get_weather"]  # it ran (and failed): not offered again


async def test_the_agents_messages_stream_shows_its_own_model_only(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    """The panel's and the judge's tokens stay off the agent's `messages` stream, on both
    paths to a deliberation (the model's call, and `when="always"`)."""
    scripted_server.set_script(AGENT, ModelScript(tool_calls=[FUSION_CALL]))
    for when in ("model_decides", "always"):
        agent = agent_for(scripted_server, middleware_for(scripted_server, when=when))
        others = []
        # subgraphs=True: the deliberation runs as a nested graph, whose model calls a
        # messages stream would show when it includes subgraphs.
        async for _, (chunk, metadata) in agent.astream(
            {"messages": [HumanMessage(QUESTION)]}, stream_mode="messages", subgraphs=True
        ):
            if isinstance(chunk, AIMessage) and metadata["langgraph_node"] != "model":
                others.append((metadata["langgraph_node"], chunk))
        if when == "model_decides":
            assert others == []
        else:
            # Only the call shown in the transcript, which the node adds to the state.
            ((node, shown),) = others
            assert node == "FusionMiddleware.before_model"
            assert shown.content == ""
            assert [call["name"] for call in shown.tool_calls] == ["fusion"]
    assert deliberations(scripted_server) == 2
