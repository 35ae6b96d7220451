"""The official OpenRouter SDKs as clients of the gateway: Python's `openrouter` (its
typed models validate every body and event) and, through Node, the TypeScript
`@openrouter/sdk` at a pinned version (zod schemas; an event or item it cannot parse
becomes `UNKNOWN`, which the test refuses)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from openrouter import OpenRouter
from openrouter.components import (
    ChatResult,
    ChatStreamChunk,
    OpenResponsesResult,
    OutputFusionServerToolItem,
)
from openrouter.components.streamevents import UnknownStreamEvents
from test_server_support import (
    CONCRETE,
    OUTER,
    PANEL,
    QUALITY_JUDGE,
    QUESTION,
    Gateway,
    healthy,
    running_gateway,
)

FUSION_TOOL = {"type": "openrouter:fusion", "parameters": {"analysis_models": PANEL}}
MESSAGES = [{"role": "user", "content": QUESTION}]
TS_SDK = "@openrouter/sdk@1.3.19"
OPUS = "anthropic/claude-opus-4.5"


@pytest.fixture(scope="module")
def shared() -> Iterator[Gateway]:
    yield from running_gateway()


@pytest.fixture
def gateway(shared: Gateway) -> Gateway:
    shared.reset()
    return shared


def _client(gateway: Gateway) -> OpenRouter:
    return OpenRouter(api_key="sk-client", server_url=gateway.url, timeout_ms=30_000)


def test_python_sdk_chat_parses_the_completion(gateway: Gateway) -> None:
    with _client(gateway) as client:
        result = client.chat.send(
            model=OUTER,
            messages=MESSAGES,
            tools=[FUSION_TOOL],
            tool_choice="required",  # type: ignore[list-item]
        )
    assert isinstance(result, ChatResult)
    assert result.model == CONCRETE
    assert result.choices[0].message.content
    assert result.usage is not None
    assert result.usage.total_tokens > 0


def test_python_sdk_chat_parses_every_chunk(gateway: Gateway) -> None:
    with _client(gateway) as client:
        stream = client.chat.send(
            model=OUTER,
            messages=MESSAGES,
            tools=[FUSION_TOOL],
            tool_choice="required",
            stream=True,  # type: ignore[list-item]
        )
        chunks = list(stream)
    assert chunks
    assert all(isinstance(chunk, ChatStreamChunk) for chunk in chunks)
    assert {chunk.model for chunk in chunks} == {CONCRETE}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None  # no stream_options sent: usage all the same


def test_python_sdk_responses_parses_the_fusion_item(gateway: Gateway) -> None:
    gateway.script(QUALITY_JUDGE, healthy(response_model=OPUS))
    with _client(gateway) as client:
        result = client.beta.responses.send(
            model="openrouter/fusion", input=QUESTION, tool_choice="required"
        )
    assert isinstance(result, OpenResponsesResult)
    fusion, message = result.output
    assert isinstance(fusion, OutputFusionServerToolItem)
    assert [r.model for r in fusion.responses or []] == PANEL
    assert message.type == "message"
    assert result.frequency_penalty is None
    assert result.model == OPUS  # the concrete name, not the alias


def test_python_sdk_responses_parses_every_event(gateway: Gateway) -> None:
    with _client(gateway) as client:
        events = list(
            client.beta.responses.send(
                model="openrouter/fusion", input=QUESTION, tool_choice="required", stream=True
            )
        )
    unknown = [e for e in events if isinstance(e, UnknownStreamEvents)]
    assert unknown == []
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.fusion_call.panel.completed" in kinds
    done = [e for e in events if e.type == "response.output_item.done"]
    assert isinstance(done[0].item, OutputFusionServerToolItem)  # type: ignore[union-attr]


async def test_python_sdk_async_chat_and_responses_streams_parse(gateway: Gateway) -> None:
    async with _client(gateway) as client:
        chunks = [
            chunk
            async for chunk in await client.chat.send_async(
                model=OUTER,
                messages=MESSAGES,  # type: ignore[arg-type]
                tools=[FUSION_TOOL],  # type: ignore[list-item]
                tool_choice="required",
                stream=True,
            )
        ]
        events = [
            event
            async for event in await client.beta.responses.send_async(
                model="openrouter/fusion", input=QUESTION, tool_choice="required", stream=True
            )
        ]
    assert {chunk.model for chunk in chunks} == {CONCRETE}
    assert chunks[-1].usage is not None
    assert not [e for e in events if isinstance(e, UnknownStreamEvents)]
    assert events[-1].type == "response.completed"


# --- the TypeScript SDK, through Node ------------------------------------------------------

SCRIPT = Path(__file__).parent / "node" / "openrouter_sdk_client.mjs"
"""Calls the gateway with the TypeScript SDK and prints what it parsed, as JSON."""


def _node_sdk() -> Path:
    return node_package(TS_SDK, "@openrouter/sdk")


def node_package(spec: str, module: str) -> Path:
    """A directory with the npm package `spec` (pinned, `name@version`) installed from the
    npm registry (cached between runs), or a skip saying why it cannot be."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(f"node and npm are needed for the {module} test")
    cache = Path(
        os.environ.get("FUSION_NODE_CACHE", Path.home() / ".cache" / "langchain-fusion-node")
    )
    target = cache / spec.replace("/", "_").replace("@", "")
    if not (target / "node_modules" / module).exists():
        target.mkdir(parents=True, exist_ok=True)
        (target / "package.json").write_text('{"type": "module", "private": true}')
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", spec],
            cwd=target,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.skip(f"npm could not install {spec}: {done.stderr.strip()[-300:]}")
    return target


def test_typescript_sdk_parses_every_body_and_event(gateway: Gateway) -> None:
    where = _node_sdk()
    shutil.copy(SCRIPT, where / "client.mjs")  # beside its node_modules
    done = subprocess.run(
        ["node", "client.mjs", gateway.url, OUTER, json.dumps(PANEL)],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["chat"]["model"] == CONCRETE
    assert out["chat"]["text"]
    assert {chunk["model"] for chunk in out["chunks"]} == {CONCRETE}
    assert out["chunks"][-1]["usage"] is not None
    assert out["response"]["items"] == ["openrouter:fusion", "message"]
    assert "UNKNOWN" not in out["events"]
    assert out["events"][:2] == ["response.created", "response.in_progress"]
    assert out["events"][-1] == "response.completed"
    assert "response.fusion_call.panel.completed" in out["events"]
