"""FusionTool: the deliberation as a LangChain tool, in agents and ToolNodes, over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from pydantic import SecretStr

from langchain_fusion import (
    FusionParameterError,
    FusionParameters,
    FusionResult,
    FusionTool,
    OpenAICompatibleBackend,
)
from langchain_fusion.contract import events as ev
from langchain_fusion.graph import DEPTH_METADATA_KEY
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

PANEL = ["panel-a", "panel-b"]
JUDGE = "judge-j"
AGENT = "agent-model"
QUESTION = "Should we shard the database or scale vertically?"


def backend_for(server: ScriptedOpenAIServer) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        base_url=server.base_url, api_key=SecretStr("sk-test"), max_retries=0, timeout=10
    )


def fusion_tool(server: ScriptedOpenAIServer, **kwargs: Any) -> FusionTool:
    settings: dict[str, Any] = {"analysis_models": PANEL, "judge_model": JUDGE}
    settings.update(kwargs)
    return FusionTool(backend=backend_for(server), **settings)


def tool_call(prompt: str = QUESTION, call_id: str = "call_1") -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": "fusion", "args": {"prompt": prompt}}


def agent_model(server: ScriptedOpenAIServer) -> ChatOpenAI:
    return ChatOpenAI(
        model=AGENT, base_url=server.base_url, api_key=SecretStr("sk-test"), max_retries=0
    )


def test_constructed_from_keywords_or_parameters(scripted_server: ScriptedOpenAIServer) -> None:
    by_keywords = fusion_tool(scripted_server, max_tool_calls=3, panel_temperature=0.4)
    by_parameters = FusionTool(
        parameters=FusionParameters(analysis_models=PANEL, model=JUDGE, max_tool_calls=3),
        panel_temperature=0.4,
        backend=backend_for(scripted_server),
    )
    for tool in (by_keywords, by_parameters):
        configuration = tool.configuration
        assert [seat.label for seat in configuration.panel] == PANEL
        assert configuration.judge_label == JUDGE
        assert configuration.parameters.max_tool_calls == 3
        assert configuration.parameters.temperature == 0.4


def test_bad_parameters_fail_at_construction(scripted_server: ScriptedOpenAIServer) -> None:
    # Pydantic wraps the FusionParameterError raised while validating; both are ValueErrors.
    with pytest.raises(ValueError, match=r"max_tool_calls = 0.*1 to 16"):
        fusion_tool(scripted_server, max_tool_calls=0)
    with pytest.raises(ValueError, match=r"temperature = 3\.0.*0 to 2"):
        fusion_tool(scripted_server, panel_temperature=3.0)
    with pytest.raises(FusionParameterError):
        FusionParameters(max_tool_calls=0)
    assert scripted_server.requests == []


def test_the_model_sees_only_a_prompt_and_a_description_of_the_cost(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    tool = fusion_tool(scripted_server)
    schema = tool.tool_call_schema.model_json_schema()  # type: ignore[union-attr]
    assert set(schema["properties"]) == {"prompt"}
    assert schema["required"] == ["prompt"]
    assert tool.name == "fusion"
    assert "costs several completions" in tool.description


def test_content_for_the_model_and_the_result_as_artifact(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    message = fusion_tool(scripted_server).invoke(tool_call())
    assert isinstance(message, ToolMessage)
    result = message.artifact
    assert isinstance(result, FusionResult)
    assert result.analysis is not None
    assert message.content.startswith("Fusion deliberation: ok")
    assert "<analysis>" in message.content
    for response in result.responses:
        assert response.content in message.content
    # Panel and judge never get the fusion tool: only the research tools.
    for model in [*PANEL, JUDGE]:
        (request,) = scripted_server.requests_for(model)
        assert [t["function"]["name"] for t in request.body["tools"]] == ["web_fetch"]
        assert request.body["messages"][-1]["content"]  # something was asked


async def test_async_invocation(scripted_server: ScriptedOpenAIServer) -> None:
    message = await fusion_tool(scripted_server).ainvoke(tool_call())
    assert isinstance(message.artifact, FusionResult)
    assert [r.model for r in message.artifact.responses] == PANEL


def test_failures_reach_the_agent_as_a_message_naming_the_reason(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    for model in PANEL:
        scripted_server.set_script(model, ModelScript(status_code=402))
    message = fusion_tool(scripted_server).invoke(tool_call())
    assert isinstance(message, ToolMessage)
    assert "failure_reason=insufficient_credits" in message.content
    assert message.artifact.status == "error"

    scripted_server.set_script(JUDGE, ModelScript(json_reply="no json here"))
    for model in PANEL:
        scripted_server.set_script(model, ModelScript())
    message = fusion_tool(scripted_server).invoke(tool_call())
    assert "judge_not_valid_json" in message.content
    assert "<responses>" in message.content  # the raw answers still reach the model


def test_invalid_call_is_a_tool_error_not_an_exception(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    message = fusion_tool(scripted_server).invoke(tool_call(prompt="   "))
    assert isinstance(message, ToolMessage)
    assert message.status == "error"
    assert "non-empty prompt" in message.content
    assert scripted_server.requests == []


def test_invoking_inside_a_deliberation_is_refused(scripted_server: ScriptedOpenAIServer) -> None:
    tool = fusion_tool(scripted_server)
    message = tool.invoke(tool_call(), config={"metadata": {DEPTH_METADATA_KEY: 1}})
    assert message.status == "error"
    assert "inside a deliberation" in message.content
    assert scripted_server.requests == []


def test_a_panelist_that_tries_to_deliberate_is_refused(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    """A panel model that is itself an agent holding the fusion tool cannot recurse."""
    inner_tool = fusion_tool(scripted_server, analysis_models=["inner-a"], judge_model="inner-j")
    scripted_server.set_script(
        AGENT, ModelScript(tool_calls=[{"name": "fusion", "arguments": {"prompt": "nested"}}])
    )
    nested_agent = create_agent(agent_model(scripted_server), tools=[inner_tool])

    from langchain_core.language_models import BaseChatModel
    from langchain_core.outputs import ChatGeneration, ChatResult

    class AgentPanelist(BaseChatModel):
        """A panelist that answers by running an agent which holds the fusion tool."""

        @property
        def _llm_type(self) -> str:
            return "agent-panelist"

        def _generate(
            self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> ChatResult:
            child = run_manager.get_child() if hasattr(run_manager, "get_child") else None
            config = {"callbacks": child, "metadata": dict(run_manager.inheritable_metadata)}
            out = nested_agent.invoke({"messages": messages}, config)
            return ChatResult(
                generations=[ChatGeneration(message=AIMessage(out["messages"][-1].text))]
            )

    outer_tool = FusionTool(
        analysis_models=[AgentPanelist(), "panel-b"],
        judge_model=JUDGE,
        backend=backend_for(scripted_server),
    )
    result = outer_tool.invoke(tool_call()).artifact
    assert result.status == "ok"
    assert scripted_server.requests_for("inner-a") == []  # the nested deliberation never ran
    (agent_turn_2,) = [
        r for r in scripted_server.requests_for(AGENT) if r.body["messages"][-1]["role"] == "tool"
    ]
    assert "inside a deliberation" in agent_turn_2.body["messages"][-1]["content"]


def test_in_an_agent_the_model_calls_it_and_answers_from_it(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted_server.set_script(
        AGENT, ModelScript(tool_calls=[{"name": "fusion", "arguments": {"prompt": QUESTION}}])
    )
    agent = create_agent(
        agent_model(scripted_server),
        tools=[fusion_tool(scripted_server)],
    )
    custom: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    for mode, chunk in agent.stream(
        {
            "messages": [
                SystemMessage("SYSTEM-99: you are a database consultant."),
                HumanMessage(QUESTION),
            ]
        },
        stream_mode=["custom", "values"],
    ):
        if mode == "custom":
            custom.append(chunk)
        else:
            final = chunk

    messages = final["messages"]
    tool_messages = [m for m in messages if isinstance(m, ToolMessage)]
    assert len(tool_messages) == 1
    assert isinstance(tool_messages[0].artifact, FusionResult)
    answer = messages[-1]
    assert isinstance(answer, AIMessage)
    assert not answer.tool_calls
    # The agent model's second turn read the tool's content, and answered from it.
    second = scripted_server.requests_for(AGENT)[-1]
    assert second.body["messages"][-1]["role"] == "tool"
    assert "Fusion deliberation: ok" in second.body["messages"][-1]["content"]
    assert answer.content == second.response_text
    # Progress events reached the agent's custom stream without subgraphs=True.
    kinds = [e["type"] for e in custom]
    assert kinds[0] == ev.IN_PROGRESS
    assert kinds[-1] == ev.COMPLETED
    assert kinds.count(ev.PANEL_COMPLETED) == 2
    # The panel saw the conversation in the agent's state, system message included.
    for model in PANEL:
        (request,) = scripted_server.requests_for(model)
        assert request.body["messages"][0] == {
            "role": "system",
            "content": "SYSTEM-99: you are a database consultant.",
        }


def test_in_a_tool_node_with_the_graph_state(scripted_server: ScriptedOpenAIServer) -> None:
    builder = StateGraph(MessagesState)
    builder.add_node("tools", ToolNode([fusion_tool(scripted_server)]))
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    graph = builder.compile()
    state = {
        "messages": [
            SystemMessage("SYSTEM-42"),
            HumanMessage("Earlier question about caching."),
            AIMessage(
                "", tool_calls=[{"name": "fusion", "args": {"prompt": QUESTION}, "id": "c9"}]
            ),
        ]
    }
    out = graph.invoke(state)
    tool_message = out["messages"][-1]
    assert isinstance(tool_message, ToolMessage)
    assert tool_message.tool_call_id == "c9"
    assert isinstance(tool_message.artifact, FusionResult)
    (request,) = scripted_server.requests_for("panel-a")
    sent = [(m["role"], m["content"]) for m in request.body["messages"]]
    assert sent == [
        ("system", "SYSTEM-42"),
        ("user", "Earlier question about caching."),
        ("user", QUESTION),
    ]
    assert json.dumps(request.body).count("tool_calls") == 0  # agent plumbing left out
