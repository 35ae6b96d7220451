"""`langchain-fusion mcp` as a client starts it: a process speaking MCP over stdio or
streamable HTTP, reached with the `mcp` SDK's own clients and, through
`langchain-mcp-adapters`, from a LangChain agent. The backend is the scripted server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_openai import ChatOpenAI
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from langchain_fusion import PRESETS
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from tests.test_readme import readme_example

PANEL = "panel-a,panel-b"
JUDGE = "judge-j"
QUESTION = "Should we shard the database or scale vertically?"
COMMAND = str(Path(sys.executable).with_name("langchain-fusion"))
ARGS = ["mcp", "--models", PANEL, "--judge", JUDGE, "--no-tools"]


def backend_env(server: ScriptedOpenAIServer) -> dict[str, str]:
    return {"OPENROUTER_BASE_URL": server.base_url, "OPENROUTER_API_KEY": "sk-test-key-123"}


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def http_server(scripted: ScriptedOpenAIServer) -> Iterator[str]:
    """`langchain-fusion mcp --http --port 0`; yields the URL it announces."""
    process = subprocess.Popen(
        [COMMAND, *ARGS, "--http", "--port", "0"],
        env={**os.environ, **backend_env(scripted)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = None
        for line in process.stderr:  # the announcement comes once the socket is bound
            if match := re.search(r"MCP server on (http://\S+/mcp)", line):
                url = match.group(1)
                break
        assert url, "the server did not announce its URL"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def answer_of(scripted: ScriptedOpenAIServer) -> str:
    text = scripted.requests_for(JUDGE)[-1].response_text
    assert text
    return text


def readme_stdio_config() -> dict[str, Any]:
    """The Claude Desktop configuration the README tells users to paste."""
    config = json.loads(readme_example("claude-desktop"))
    server: dict[str, Any] = config["mcpServers"]["fusion"]
    return server


def test_the_claude_code_command_starts_the_same_server() -> None:
    line = readme_example("claude-code").strip()
    words = shlex.split(line)
    assert words[:4] == ["claude", "mcp", "add", "fusion"]
    split = words.index("--")
    config = readme_stdio_config()
    assert words[split + 1 :] == [config["command"], *config["args"]]
    envs = [words[i + 1].split("=")[0] for i in range(4, split) if words[i] == "--env"]
    assert envs == list(config["env"])


async def test_the_readme_configuration_over_stdio(scripted: ScriptedOpenAIServer) -> None:
    """What a Claude Desktop user pastes, started as Claude Desktop starts it."""
    config = readme_stdio_config()
    assert config["command"] == "langchain-fusion"
    # The installed command; the README's key placeholder replaced by the scripted backend.
    params = StdioServerParameters(
        command=COMMAND,
        args=config["args"],
        env={**{name: "unused" for name in config["env"]}, **backend_env(scripted)},
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = [tool.name for tool in (await session.list_tools()).tools]
        result = await session.call_tool("fusion", {"prompt": QUESTION})
        resources = [str(r.uri) for r in (await session.list_resources()).resources]
    assert tools == ["fusion", "fusion_start", "fusion_result"]
    assert not result.isError
    assert result.content[0].text == scripted.requests[-1].response_text  # type: ignore[union-attr]
    assert result.structuredContent is not None
    high = PRESETS["general-high"]  # no panel configured: the hosted default
    assert [r["model"] for r in result.structuredContent["responses"]] == list(high.analysis_models)
    assert resources == ["fusion://presets"]


async def test_over_streamable_http_with_progress(
    scripted: ScriptedOpenAIServer, http_server: str
) -> None:
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    async with (
        streamable_http_client(http_server) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool(
            "fusion", {"prompt": QUESTION, "max_tool_calls": 2}, progress_callback=on_progress
        )
        refused = await session.call_tool("fusion", {"prompt": QUESTION, "max_tool_call": 2})
    assert not result.isError
    assert result.content[0].text == answer_of(scripted)  # type: ignore[union-attr]
    assert result.structuredContent is not None
    assert result.structuredContent["status"] == "ok"
    assert progress == [(1, 2), (2, 2)]
    assert refused.isError
    assert "did you mean `max_tool_calls`" in refused.content[0].text  # type: ignore[union-attr]


async def test_mounted_in_a_langchain_agent_through_the_adapters(
    scripted: ScriptedOpenAIServer, http_server: str
) -> None:
    client = MultiServerMCPClient({"fusion": {"transport": "streamable_http", "url": http_server}})
    tools = await client.get_tools()
    assert {tool.name for tool in tools} == {"fusion", "fusion_start", "fusion_result"}
    scripted.set_script(
        "agent-model",
        ModelScript(tool_calls=[{"name": "fusion", "arguments": {"prompt": QUESTION}}]),
    )
    agent = create_agent(
        ChatOpenAI(
            model="agent-model",
            base_url=scripted.base_url,
            api_key=SecretStr("sk-test"),
            max_retries=0,
        ),
        tools=tools,
    )
    final: dict[str, Any] = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]})
    (tool_message,) = [m for m in final["messages"] if isinstance(m, ToolMessage)]
    assert tool_message.name == "fusion"
    assert tool_message.text == answer_of(scripted)
    assert tool_message.artifact["structured_content"]["status"] == "ok"
    # The agent's model read the answer and replied from it.
    second = scripted.requests_for("agent-model")[-1]
    sent = second.body["messages"][-1]["content"]
    texts = [sent] if isinstance(sent, str) else [block["text"] for block in sent]
    assert texts == [answer_of(scripted)]
    assert final["messages"][-1].content == second.response_text


def test_the_command_refuses_bad_options_before_starting(scripted: ScriptedOpenAIServer) -> None:
    from typer.testing import CliRunner

    from langchain_fusion.cli import app

    before = len(scripted.requests)
    help_text = " ".join(CliRunner().invoke(app, ["mcp", "--help"]).output.split())
    for option in ["--http", "--port", "--base-url", "--local", "--allow-models", "--max-panel"]:
        assert option in help_text
    done = CliRunner().invoke(app, ["mcp", "--max-tool-calls", "99"], env=backend_env(scripted))
    assert done.exit_code == 2
    assert "max_tool_calls" in done.output
    assert len(scripted.requests) == before
