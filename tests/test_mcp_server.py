"""The MCP server, through the `mcp` SDK's own client: in memory for the tools' behaviour,
then `langchain-fusion mcp` itself over stdio and streamable HTTP, and mounted into a
LangChain agent through `langchain-mcp-adapters`. The backend is the strict scripted
server throughout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from jsonschema import validate
from mcp import ClientSession
from mcp.shared.exceptions import McpError
from mcp.shared.memory import create_connected_server_and_client_session
from mcp.types import (
    CallToolRequest,
    CallToolRequestParams,
    CallToolResult,
    CancelledNotification,
    CancelledNotificationParams,
    ClientNotification,
    ClientRequest,
)
from pydantic import SecretStr

from langchain_fusion import OpenAICompatibleBackend
from langchain_fusion.mcp import PRESETS_URI, build_runner, create_mcp_server
from langchain_fusion.server.errors import GatewayError
from langchain_fusion.server.policy import Policy
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

PANEL = ["panel-a", "panel-b"]
JUDGE = "judge-j"
QUESTION = "Should we shard the database or scale vertically?"


def backend_for(server: ScriptedOpenAIServer) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        base_url=server.base_url, api_key=SecretStr("sk-test"), max_retries=0, timeout=10
    )


@asynccontextmanager
async def connected(
    scripted: ScriptedOpenAIServer, policy: Policy | None = None
) -> AsyncIterator[ClientSession]:
    runner = build_runner(
        backend=backend_for(scripted),
        analysis_models=PANEL,
        judge_model=JUDGE,
        server_tools=[],
        policy=policy,
    )
    server = create_mcp_server(runner)
    # The SDK's in-memory transport, as its own tests connect a client to a FastMCP server.
    async with create_connected_server_and_client_session(server._mcp_server) as client:
        yield client


def text_of(result: CallToolResult) -> str:
    (block,) = result.content
    assert block.type == "text"
    return block.text


async def test_the_tools_and_their_schemas() -> None:
    with ScriptedOpenAIServer() as scripted:
        async with connected(scripted) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {"fusion", "fusion_start", "fusion_result"}
    fusion = tools["fusion"]
    assert fusion.inputSchema["required"] == ["prompt"]
    assert set(fusion.inputSchema["properties"]) == {
        "prompt",
        "analysis_models",
        "model",
        "preset",
        "max_tool_calls",
        "temperature",
    }
    assert fusion.outputSchema is not None
    assert {"status", "analysis", "responses", "failure_reason"} <= set(
        fusion.outputSchema["properties"]
    )
    assert tools["fusion_result"].outputSchema is not None
    assert scripted.requests == []


async def test_fusion_answers_as_text_with_the_result_as_structured_content() -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    with ScriptedOpenAIServer() as scripted:
        async with connected(scripted) as client:
            schema = {t.name: t for t in (await client.list_tools()).tools}["fusion"].outputSchema
            result = await client.call_tool(
                "fusion", {"prompt": QUESTION}, progress_callback=on_progress
            )
        assert not result.isError
        # The analyst writes the final answer (on the alias it is also the outer model).
        answer = scripted.requests_for(JUDGE)[-1]
        assert text_of(result) == answer.response_text
        structured = result.structuredContent
        assert structured is not None
        validate(structured, schema)
        assert structured["status"] == "ok"
        assert [r["model"] for r in structured["responses"]] == PANEL
        assert set(structured["analysis"]) == {
            "consensus",
            "contradictions",
            "partial_coverage",
            "unique_insights",
            "blind_spots",
        }
        assert "failure_reason" not in structured  # absent, never null
        for model in PANEL:
            (asked,) = scripted.requests_for(model)
            assert asked.body["messages"][-1]["content"] == QUESTION
    assert [(done, total) for done, total, _ in progress] == [(1, 2), (2, 2)]
    assert {message for _, _, message in progress} == {f"{m} answered" for m in PANEL}


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"prompt": QUESTION, "analysis_model": ["x/y"]}, "did you mean `analysis_models`"),
        ({"prompt": QUESTION, "max_tool_calls": 0}, "max_tool_calls"),
        ({"prompt": QUESTION, "temperature": 3}, "0 to 2"),
        ({"prompt": QUESTION, "preset": "general-hgh"}, "general-high"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": QUESTION, "analysis_models": []}, "analysis_models"),
    ],
)
async def test_a_bad_call_is_refused_before_any_model_is_called(
    arguments: dict[str, Any], says: str
) -> None:
    with ScriptedOpenAIServer() as scripted:
        async with connected(scripted) as client:
            result = await client.call_tool("fusion", arguments)
            start = await client.call_tool("fusion_start", arguments)
        assert result.isError
        assert start.isError
        assert says in text_of(result)
        assert scripted.requests == []


@pytest.mark.parametrize(
    ("policy", "arguments", "says"),
    [
        (Policy(allow_models=("panel-*", JUDGE)), {"model": "openai/gpt-5"}, "not allowed"),
        (Policy(max_panel=1), {}, "over this server's limit of 1"),
        (Policy(max_request_tokens=1000), {}, "per-request limit"),
    ],
)
async def test_the_servers_policy_holds_before_any_model_is_called(
    policy: Policy, arguments: dict[str, Any], says: str
) -> None:
    with ScriptedOpenAIServer() as scripted:
        async with connected(scripted, policy) as client:
            result = await client.call_tool("fusion", {"prompt": QUESTION, **arguments})
        assert result.isError
        assert says in text_of(result)
        assert scripted.requests == []


async def test_a_failed_deliberation_is_an_error_result_with_the_reason() -> None:
    with ScriptedOpenAIServer() as scripted:
        for model in PANEL:
            scripted.set_script(model, ModelScript(status_code=429))
        async with connected(scripted) as client:
            result = await client.call_tool("fusion", {"prompt": QUESTION})
    assert result.isError
    assert result.structuredContent is not None
    assert result.structuredContent["status"] == "error"
    assert result.structuredContent["failure_reason"] == "rate_limited"
    assert [f["model"] for f in result.structuredContent["failed_models"]] == PANEL


async def test_start_then_result_for_long_runs() -> None:
    with ScriptedOpenAIServer() as scripted:
        async with connected(scripted) as client:
            started = await client.call_tool("fusion_start", {"prompt": QUESTION})
            assert not started.isError
            assert started.structuredContent is not None
            run_id = started.structuredContent["run_id"]
            assert started.structuredContent["status"] == "in_progress"
            finished = await client.call_tool(
                "fusion_result", {"run_id": run_id, "wait_seconds": 30}
            )
            again = await client.call_tool("fusion_result", {"run_id": run_id})
            unknown = await client.call_tool("fusion_result", {"run_id": "fusion_nope"})
        structured = finished.structuredContent
        assert structured is not None
        assert structured["status"] == "completed"
        assert structured["panel_done"] == structured["panel_size"] == 2
        assert structured["result"]["status"] == "ok"
        assert (
            text_of(finished)
            == structured["answer"]
            == scripted.requests_for(JUDGE)[-1].response_text
        )
        assert again.structuredContent == structured  # read as often as needed
        assert unknown.isError
        assert "no fusion run" in text_of(unknown)
        assert len(scripted.requests_for("panel-a")) == 1  # one run, read three times


async def test_cancelling_the_call_cancels_every_inner_call() -> None:
    with ScriptedOpenAIServer() as scripted:
        for model in PANEL:
            scripted.set_script(model, ModelScript(hang=True))
        async with connected(scripted) as client:
            idle = len(asyncio.all_tasks())
            request = ClientRequest(
                CallToolRequest(
                    params=CallToolRequestParams(name="fusion", arguments={"prompt": QUESTION})
                )
            )
            call = asyncio.create_task(client.send_request(request, CallToolResult))
            while len(scripted.requests) < len(PANEL):  # noqa: ASYNC110 (another thread)
                await asyncio.sleep(0.02)
            assert len(asyncio.all_tasks()) > idle + 1  # the call and its inner calls run
            # The first request after `initialize` (id 0) has id 1.
            await client.send_notification(
                ClientNotification(
                    CancelledNotification(
                        params=CancelledNotificationParams(requestId=1, reason="user stopped it")
                    )
                )
            )
            with pytest.raises(McpError, match="cancelled"):
                await call
            for _ in range(250):  # every inner call is cancelled, none left running
                if len(asyncio.all_tasks()) == idle:
                    break
                await asyncio.sleep(0.02)
            assert len(asyncio.all_tasks()) == idle
            assert scripted.requests_for(JUDGE) == []
            # The server goes on serving.
            for model in PANEL:
                scripted.set_script(model, ModelScript())
            result = await client.call_tool("fusion", {"prompt": QUESTION})
            assert not result.isError


async def test_the_presets_resource() -> None:
    with ScriptedOpenAIServer() as scripted:
        async with connected(scripted) as client:
            listed = [str(r.uri) for r in (await client.list_resources()).resources]
            read = await client.read_resource(PRESETS_URI)
    assert listed == [PRESETS_URI]
    presets = json.loads(read.contents[0].text)  # type: ignore[union-attr]
    assert {"general-high", "general-budget", "general-fast"} <= set(presets)
    assert presets["general-high"]["analysis_models"][0] == "~anthropic/claude-opus-latest"
    assert presets["general-high"]["model"]


async def test_the_configured_key_never_reaches_a_client() -> None:
    secret = "sk-or-v1-secret-value-0123456789"
    with ScriptedOpenAIServer() as scripted:
        for model in (*PANEL, JUDGE):
            scripted.set_script(model, ModelScript(status_code=401))
        backend = OpenAICompatibleBackend(
            base_url=scripted.base_url, api_key=SecretStr(secret), max_retries=0, timeout=10
        )
        runner = build_runner(
            backend=backend, analysis_models=PANEL, judge_model=JUDGE, server_tools=[]
        )
        assert runner.secrets == [secret]
        # An upstream text that quotes the key (some providers echo it) is redacted.
        echoed = runner.describe(GatewayError(401, f"invalid api key {secret}"))
        assert secret not in echoed
        server = create_mcp_server(runner)
        async with create_connected_server_and_client_session(server._mcp_server) as client:
            result = await client.call_tool("fusion", {"prompt": QUESTION})
    assert result.isError
    assert secret not in result.model_dump_json()
