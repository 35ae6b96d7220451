"""ChatFusion: the `openrouter/fusion` alias as a chat model, over HTTP to the scripted server."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import LLMResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from pydantic import BaseModel, Field

import langchain_fusion
from langchain_fusion import ChatFusion, FusionResult
from langchain_fusion.contract.presets import PRESETS
from langchain_fusion.testing import ModelScript, RecordedRequest, ScriptedOpenAIServer

PANEL = ["panel-a", "panel-b"]
JUDGE = "judge-j"
OUTER = "outer-o"
QUESTION = "Is nuclear power part of a low-carbon grid?"
CALLS_FUSION = ModelScript(
    tool_calls=[{"name": "fusion", "arguments": {"prompt": QUESTION}}],
    response_model="anthropic/claude-opus-4.5",
)


def chat(server: ScriptedOpenAIServer, **kwargs: Any) -> ChatFusion:
    settings: dict[str, Any] = {
        "analysis_models": PANEL,
        "judge_model": JUDGE,
        "outer_model": OUTER,
        "base_url": server.base_url,
        "api_key": "sk-test",
        "max_retries": 0,
    }
    settings.update(kwargs)
    return ChatFusion(**settings)


def outer_requests(server: ScriptedOpenAIServer) -> list[RecordedRequest]:
    return server.requests_for(OUTER)


def offered_tools(request: RecordedRequest) -> list[str]:
    return [t["function"]["name"] for t in request.body.get("tools", [])]


def panel_requests(server: ScriptedOpenAIServer) -> list[RecordedRequest]:
    return [r for model in PANEL for r in server.requests_for(model)]


@tool
def get_weather(city: str) -> str:
    """Get the weather for a city."""
    return f"sunny in {city}"


def test_all_is_pinned() -> None:
    assert sorted(langchain_fusion.__all__) == sorted(
        [
            "PRESETS",
            "Cascade",
            "CascadeReport",
            "ChatFusion",
            "ChatOpenAICompatible",
            "FailedModel",
            "FusionAnalysis",
            "FusionMiddleware",
            "FusionParameterError",
            "FusionParameters",
            "FusionResult",
            "FusionTool",
            "FusionUsage",
            "OpenAICompatibleBackend",
            "PanelResponse",
            "Preset",
            "ReasoningConfig",
            "Source",
            "TokenUsage",
            "ToolSpec",
            "create_fusion_graph",
            "register_preset",
        ]
    )


def test_fusion_flash_selects_the_fast_preset(scripted_server: ScriptedOpenAIServer) -> None:
    flash = ChatFusion(model="openrouter/fusion-flash", base_url=scripted_server.base_url)
    params = flash._identifying_params
    assert params["preset"] == "general-fast"
    assert params["analysis_models"] == list(PRESETS["general-fast"].analysis_models)
    assert params["judge_model"] == PRESETS["general-fast"].model
    default = ChatFusion(model="openrouter/fusion", base_url=scripted_server.base_url)
    assert default._identifying_params["preset"] == "general-high"
    with pytest.raises(ValueError, match="openrouter/fusion"):
        ChatFusion(model="openrouter/auto")


def test_the_outer_model_decides_to_deliberate(scripted_server: ScriptedOpenAIServer) -> None:
    scripted_server.set_script(OUTER, CALLS_FUSION)
    message = chat(scripted_server).invoke(QUESTION)

    first, second = outer_requests(scripted_server)
    assert offered_tools(first) == ["fusion"]
    assert offered_tools(second) == []  # fusion ran: it is not offered again
    assert second.body["messages"][-1]["role"] == "tool"
    assert "Fusion deliberation: ok" in second.body["messages"][-1]["content"]
    assert len(panel_requests(scripted_server)) == 2
    assert message.content == second.response_text
    assert not message.tool_calls
    metadata = message.response_metadata
    assert metadata["model_name"] == "anthropic/claude-opus-4.5"  # concrete, never the alias
    assert metadata["router"] == "openrouter/fusion"
    result = FusionResult.model_validate(metadata["fusion_result"])
    assert [r.model for r in result.responses] == PANEL
    assert result.analysis is not None


def test_the_outer_model_may_answer_without_deliberating(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    message = chat(scripted_server).invoke("Hi! What's 2 + 2?")
    (only,) = outer_requests(scripted_server)
    assert offered_tools(only) == ["fusion"]
    assert panel_requests(scripted_server) == []
    assert message.content == only.response_text
    assert "fusion_result" not in message.response_metadata


@pytest.mark.parametrize("how", ["constructor", "bind_tools", "call_kwargs", "any", "named"])
def test_tool_choice_required_forces_deliberation(
    scripted_server: ScriptedOpenAIServer, how: str
) -> None:
    if how == "constructor":
        runnable: Any = chat(scripted_server, tool_choice="required")
        message = runnable.invoke(QUESTION)
    elif how == "bind_tools":
        message = chat(scripted_server).bind_tools([], tool_choice="required").invoke(QUESTION)
    elif how == "any":
        message = chat(scripted_server).bind_tools([], tool_choice="any").invoke(QUESTION)
    elif how == "named":
        message = chat(scripted_server).invoke(QUESTION, tool_choice="fusion")
    else:
        message = chat(scripted_server).invoke(QUESTION, tool_choice="required")

    assert len(panel_requests(scripted_server)) == 2
    (answer,) = outer_requests(scripted_server)  # no deciding call: it could only pick fusion
    assert offered_tools(answer) == []
    assert "tool_choice" not in answer.body
    assert message.content == answer.response_text
    assert "fusion_result" in message.response_metadata
    (panel,) = scripted_server.requests_for("panel-a")
    assert panel.body["messages"][-1]["content"] == QUESTION


def test_user_tools_stay_next_to_fusion_and_their_calls_come_back(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted_server.set_script(
        OUTER, ModelScript(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    )
    message = chat(scripted_server).bind_tools([get_weather]).invoke("Weather in Oslo?")
    (request,) = outer_requests(scripted_server)
    assert offered_tools(request) == ["fusion", "get_weather"]
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("get_weather", {"city": "Oslo"})
    ]
    assert panel_requests(scripted_server) == []


def test_after_deliberating_the_outer_model_can_still_call_a_user_tool(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    calls = iter(
        [
            [{"name": "fusion", "arguments": {"prompt": QUESTION}}],
            [{"name": "get_weather", "arguments": {"city": "Paris"}}],
        ]
    )
    scripted_server.set_script(OUTER, CALLS_FUSION)
    llm = chat(scripted_server).bind_tools([get_weather])
    scripted_server.set_script(OUTER, ModelScript(tool_calls=next(calls), tool_policy="first_turn"))
    message = llm.invoke(QUESTION)
    assert "fusion_result" in message.response_metadata
    first, second = outer_requests(scripted_server)
    assert offered_tools(first) == ["fusion", "get_weather"]
    assert offered_tools(second) == ["get_weather"]


def test_usage_is_the_sum_of_every_inner_call(scripted_server: ScriptedOpenAIServer) -> None:
    scripted_server.set_script(OUTER, CALLS_FUSION)

    class Usage(BaseCallbackHandler):
        def __init__(self) -> None:
            self.kind: dict[UUID, str] = {}
            self.parent: dict[UUID, UUID | None] = {}
            self.usage: dict[UUID, dict[str, int]] = {}

        def on_chat_model_start(
            self,
            serialized: Any,
            messages: Any,
            *,
            run_id: UUID,
            parent_run_id: UUID | None = None,
            **kwargs: Any,
        ) -> None:
            self.kind[run_id] = serialized["id"][-1]
            self.parent[run_id] = parent_run_id

        def on_chain_start(
            self,
            serialized: Any,
            inputs: Any,
            *,
            run_id: UUID,
            parent_run_id: UUID | None = None,
            **kwargs: Any,
        ) -> None:
            self.parent[run_id] = parent_run_id

        def on_tool_start(
            self,
            serialized: Any,
            input_str: str,
            *,
            run_id: UUID,
            parent_run_id: UUID | None = None,
            **kwargs: Any,
        ) -> None:
            self.parent[run_id] = parent_run_id

        def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
            message = response.generations[0][0].message  # type: ignore[attr-defined]
            self.usage[run_id] = dict(message.usage_metadata or {})

        def ancestors(self, run_id: UUID) -> list[UUID]:
            chain = []
            while (run_id := self.parent.get(run_id)) is not None:  # type: ignore[assignment]
                chain.append(run_id)
            return chain

    handler = Usage()
    message = chat(scripted_server).invoke(QUESTION, config={"callbacks": [handler]})
    (fusion_run,) = [r for r, kind in handler.kind.items() if kind == "ChatFusion"]
    inner = [r for r, kind in handler.kind.items() if kind != "ChatFusion"]
    assert len(inner) == 5  # outer twice, two panelists, the judge
    assert all(fusion_run in handler.ancestors(run) for run in inner)  # nested under it
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        expected = sum(handler.usage[run][key] for run in inner)
        assert message.usage_metadata is not None
        assert message.usage_metadata[key] == expected > 0


def test_streaming_yields_the_answer_token_by_token(scripted_server: ScriptedOpenAIServer) -> None:
    scripted_server.set_script(OUTER, CALLS_FUSION)
    chunks = list(chat(scripted_server).stream(QUESTION))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    text_chunks = [c for c in chunks if c.content]
    assert len(text_chunks) > 5
    final = outer_requests(scripted_server)[-1].response_text
    assert "".join(str(c.content) for c in chunks) == final
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["total_tokens"] > 0
    assert merged.response_metadata["router"] == "openrouter/fusion"


async def test_async_streaming_and_invoke(scripted_server: ScriptedOpenAIServer) -> None:
    scripted_server.set_script(OUTER, CALLS_FUSION)
    llm = chat(scripted_server)
    message = await llm.ainvoke(QUESTION)
    assert "fusion_result" in message.response_metadata
    scripted_server.reset()
    text = "".join([str(c.content) async for c in llm.astream(QUESTION)])
    assert text == outer_requests(scripted_server)[-1].response_text


def test_structured_output(scripted_server: ScriptedOpenAIServer) -> None:
    class Verdict(BaseModel):
        """A verdict on the question."""

        answer: str = Field(description="yes or no")
        confidence: float

    scripted_server.set_script(
        OUTER,
        ModelScript(
            tool_calls=[{"name": "Verdict", "arguments": {"answer": "yes", "confidence": 0.7}}]
        ),
    )
    verdict = chat(scripted_server).with_structured_output(Verdict).invoke(QUESTION)
    assert verdict == Verdict(answer="yes", confidence=0.7)
    (request,) = outer_requests(scripted_server)
    assert offered_tools(request) == ["fusion", "Verdict"]
    assert request.body["tool_choice"] == "required"


def test_lcel_chain_and_batch(scripted_server: ScriptedOpenAIServer) -> None:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are terse."), ("human", "Question: {question}")]
    )
    chain = prompt | chat(scripted_server, tool_choice="required") | StrOutputParser()
    answers = chain.batch([{"question": "Tabs or spaces?"}, {"question": "Vim or Emacs?"}])
    assert len(answers) == 2
    assert all(isinstance(a, str) and a for a in answers)
    sent = {r.body["messages"][-1]["content"] for r in scripted_server.requests_for("panel-a")}
    assert sent == {"Question: Tabs or spaces?", "Question: Vim or Emacs?"}
    for request in scripted_server.requests_for("panel-a"):
        assert request.body["messages"][0] == {"role": "system", "content": "You are terse."}


async def test_astream_events_show_the_inner_runs_as_children(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted_server.set_script(OUTER, CALLS_FUSION)
    llm = chat(scripted_server)
    seen = [e async for e in llm.astream_events(QUESTION, version="v2")]
    (root,) = [e for e in seen if e["event"] == "on_chat_model_start" and e["name"] == "ChatFusion"]
    root_id = root["run_id"]
    starts = {e["name"]: e for e in seen if e["event"].endswith("_start")}
    for name in ["fusion", "panel:panel-a", "panel:panel-b", "judge"]:
        assert name in starts, sorted(starts)
        assert root_id in starts[name]["parent_ids"]
    streamed = "".join(
        str(e["data"]["chunk"].content)
        for e in seen
        if e["event"] == "on_chat_model_stream" and e["run_id"] == root_id
    )
    assert streamed == outer_requests(scripted_server)[-1].response_text


def test_identifying_params_change_with_every_setting_that_changes_a_call(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    from langchain_fusion.contract.result import AnalysisLimits

    base = chat(scripted_server)._identifying_params
    changed = {
        "panel_temperature": 0.9,
        "max_completion_tokens": 77,
        "max_tool_calls": 1,
        "deadline": 9.0,
        "analysis_limits": AnalysisLimits(max_items=2),
        "temperature": 0.1,
    }
    for field, value in changed.items():
        assert chat(scripted_server, **{field: value})._identifying_params != base, field


def test_ls_params_report_provider_and_model(scripted_server: ScriptedOpenAIServer) -> None:
    llm = chat(scripted_server, temperature=0.2, max_tokens=99)
    params = llm._get_ls_params()
    # The provider the outer call goes to: an OpenAI-compatible endpoint here, not
    # OpenRouter (nothing is called to find out).
    assert params["ls_provider"] == "openai"
    on_openrouter = ChatFusion(base_url="https://openrouter.ai/api/v1", api_key="sk-or-x")
    assert on_openrouter._get_ls_params()["ls_provider"] == "openrouter"
    assert scripted_server.requests == []
    assert params["ls_model_name"] == "openrouter/fusion"
    assert params["ls_temperature"] == 0.2
    assert params["ls_max_tokens"] == 99
    assert llm._llm_type == "fusion-chat"


def test_outer_settings_reach_only_the_outer_model(scripted_server: ScriptedOpenAIServer) -> None:
    scripted_server.set_script(OUTER, CALLS_FUSION)
    chat(
        scripted_server,
        temperature=0.2,
        max_tokens=50,
        panel_temperature=0.9,
        max_completion_tokens=77,
    ).invoke([SystemMessage("Be brief."), HumanMessage(QUESTION)], stop=["\n\n"])
    for request in outer_requests(scripted_server):
        assert request.body["temperature"] == 0.2
        assert request.body["max_completion_tokens"] == 50
        assert request.body["stop"] == ["\n\n"]
        assert "x-openrouter-fusion-depth" not in request.headers
    for request in panel_requests(scripted_server):
        assert request.body["temperature"] == 0.9
        assert request.body["max_completion_tokens"] == 77
        assert request.headers["x-openrouter-fusion-depth"] == "1"
    (judge,) = scripted_server.requests_for(JUDGE)
    assert judge.body["temperature"] == 0


def test_failed_deliberation_still_gets_an_answer(scripted_server: ScriptedOpenAIServer) -> None:
    for model in PANEL:
        scripted_server.set_script(model, ModelScript(status_code=429, retry_after=0))
    message = chat(scripted_server, tool_choice="required").invoke(QUESTION)
    (answer,) = outer_requests(scripted_server)
    assert "failure_reason=rate_limited" in answer.body["messages"][-1]["content"]
    assert message.content == answer.response_text
    result = FusionResult.model_validate(message.response_metadata["fusion_result"])
    assert result.failure_reason == "rate_limited"
    assert isinstance(message, AIMessage)


def test_in_an_agent_the_messages_stream_shows_the_answer_once(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    from langchain.agents import create_agent

    agent = create_agent(chat(scripted_server, tool_choice="required"), tools=[])
    tokens: list[str] = []
    for message, metadata in agent.stream(
        {"messages": [HumanMessage(QUESTION)]}, stream_mode="messages"
    ):
        assert metadata["langgraph_node"] == "model"
        if isinstance(message, AIMessageChunk) and message.content:
            tokens.append(str(message.content))
    answer = outer_requests(scripted_server)[-1].response_text
    assert len(panel_requests(scripted_server)) == 2  # it deliberated...
    assert "".join(tokens) == answer  # ...and only the final answer streamed, once


def test_invoke_streams_the_outer_model_only_for_a_listener(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted_server.set_script(OUTER, CALLS_FUSION)
    llm = chat(scripted_server)
    llm.invoke(QUESTION)
    assert [r.stream for r in outer_requests(scripted_server)] == [False, False]
    scripted_server.reset()
    list(llm.stream(QUESTION))
    assert [r.stream for r in outer_requests(scripted_server)] == [True, True]
    scripted_server.reset()
    streaming = chat(scripted_server, streaming=True)
    streaming.invoke(QUESTION)
    assert [r.stream for r in outer_requests(scripted_server)] == [True, True]
