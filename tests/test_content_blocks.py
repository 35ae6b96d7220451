"""The deliberation in LangChain's standard content blocks (`server_tool_call`,
`server_tool_result`) on ChatFusion's answer, and the progress events in
`stream_events(version="v3")`, on the scripted server."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from langchain_fusion import ChatFusion, FusionMiddleware, OpenAICompatibleBackend
from langchain_fusion.contract import events as ev
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

PANEL = ["panel-a", "panel-b"]
JUDGE = "judge-j"
QUESTION = "Where do experts disagree on dark matter?"


def backend_for(server: ScriptedOpenAIServer) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        base_url=server.base_url, api_key=SecretStr("sk-test"), max_retries=0, timeout=10
    )


def chat(server: ScriptedOpenAIServer, **kwargs: Any) -> ChatFusion:
    settings: dict[str, Any] = {"tool_choice": "required", **kwargs}
    return ChatFusion(
        analysis_models=PANEL,
        judge_model=JUDGE,
        server_tools=[],
        backend=backend_for(server),
        **settings,
    )


async def answer(llm: ChatFusion, mode: str) -> AIMessage | AIMessageChunk:
    if mode == "invoke":
        return llm.invoke(QUESTION)
    if mode == "ainvoke":
        return await llm.ainvoke(QUESTION)
    chunks: list[AIMessageChunk] = []
    if mode == "stream":
        chunks = list(llm.stream(QUESTION))
    else:
        chunks = [chunk async for chunk in llm.astream(QUESTION)]
    assert len(chunks) > 1  # it did stream
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    return merged


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
async def test_the_deliberation_is_a_server_tool_call_and_its_result(
    scripted_server: ScriptedOpenAIServer, mode: str
) -> None:
    message = await answer(chat(scripted_server), mode)
    assert isinstance(message.content, str)  # the content itself is unchanged
    call, result, text = message.content_blocks
    assert call["type"] == "server_tool_call"
    assert call["name"] == "fusion"
    assert call["args"] == {"prompt": QUESTION}
    assert result["type"] == "server_tool_result"
    assert result["tool_call_id"] == call["id"]
    assert result["status"] == "success"
    # The result block is the contract's result, as response_metadata has it too.
    assert result["output"] == message.response_metadata["fusion_result"]
    assert [r["model"] for r in result["output"]["responses"]] == PANEL
    assert text == {"type": "text", "text": scripted_server.requests_for(JUDGE)[-1].response_text}


def test_a_failed_deliberation_is_an_error_result(scripted_server: ScriptedOpenAIServer) -> None:
    for model in PANEL:
        scripted_server.set_script(model, ModelScript(status_code=429))
    blocks = chat(scripted_server).invoke(QUESTION).content_blocks
    result = next(b for b in blocks if b["type"] == "server_tool_result")
    assert result["status"] == "error"
    assert result["output"]["failure_reason"] == "rate_limited"


def test_no_deliberation_no_server_blocks(scripted_server: ScriptedOpenAIServer) -> None:
    message = chat(scripted_server, tool_choice=None).invoke(QUESTION, fusion_enabled=False)
    assert [b["type"] for b in message.content_blocks] == ["text"]
    assert scripted_server.requests_for("panel-a") == []


def test_output_version_v1_puts_the_blocks_in_content(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    message = chat(scripted_server, output_version="v1").invoke(QUESTION)
    assert isinstance(message.content, list)
    assert [b["type"] for b in message.content] == [
        "server_tool_call",
        "server_tool_result",
        "text",
    ]
    assert message.content_blocks == message.content
    assert message.text == scripted_server.requests_for(JUDGE)[-1].response_text


def test_chat_fusion_stream_events_v3_carries_the_blocks(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    run = chat(scripted_server).stream_events(QUESTION, version="v3")
    finished = [e["content"] for e in run if e.get("event") == "content-block-finish"]
    kinds = [block["type"] for block in finished]
    assert kinds == ["text", "server_tool_call", "server_tool_result"]
    assert finished[1]["args"] == {"prompt": QUESTION}
    assert finished[2]["output"]["status"] == "ok"


def agent_for(server: ScriptedOpenAIServer) -> Any:
    server.set_script(
        "agent-model",
        ModelScript(tool_calls=[{"name": "fusion", "arguments": {"prompt": QUESTION}}]),
    )
    model = ChatOpenAI(
        model="agent-model", base_url=server.base_url, api_key=SecretStr("sk-test"), max_retries=0
    )
    middleware = FusionMiddleware(
        analysis_models=PANEL, judge_model=JUDGE, server_tools=[], backend=backend_for(server)
    )
    return create_agent(model, tools=[], middleware=[middleware])


def assert_progress(kinds: list[str]) -> None:
    assert kinds[0] == ev.IN_PROGRESS
    assert kinds[-1] == ev.COMPLETED
    assert kinds.count(ev.PANEL_COMPLETED) == len(PANEL)


def test_the_agents_v3_stream_has_the_progress_on_run_fusion(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    run = agent_for(scripted_server).stream_events(
        {"messages": [HumanMessage(QUESTION)]}, version="v3"
    )
    assert_progress([event["type"] for event in run.fusion])
    assert run.output["fusion"].status == "ok"


async def test_the_agents_async_v3_stream(scripted_server: ScriptedOpenAIServer) -> None:
    run = await agent_for(scripted_server).astream_events(
        {"messages": [HumanMessage(QUESTION)]}, version="v3"
    )
    assert_progress([event["type"] async for event in run.fusion])
