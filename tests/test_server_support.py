"""Shared set-up for the gateway's tests (no tests here): a fusion server whose backend is a
scripted server, SDK clients for it, and what the backend saw.

The gateway's panel defaults to PANEL with research off, and it names no judge and no
outer model: the hosted defaults then apply (the judge of a server-tool request is its
outer model; an alias answers with the preset's judge), which the tests rely on.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import wire_schema

from langchain_fusion.server import FusionServer, create_app, fusion_models
from langchain_fusion.testing import ModelScript, RecordedRequest, ScriptedOpenAIServer

PANEL = ["panel-a", "panel-b"]
QUALITY_JUDGE = "~anthropic/claude-opus-latest"
"""The judge of the default preset (general-high): the aliases' outer model here."""
OUTER = "outer/model-x"
CONCRETE = "outer/model-x-2025"
QUESTION = "Survey the strongest arguments for and against a carbon tax."
COST_PER_TOKEN = 1e-6
UPSTREAM_KEY = "sk-upstream-server-key-0000000000"
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_QUESTION = "What is the weather in 'Paris'?"
FORCE_FUSION = {"type": "function", "function": {"name": "fusion"}}


@dataclass
class Gateway:
    """A running gateway, its scripted backend, and clients."""

    server: FusionServer
    upstream: ScriptedOpenAIServer
    client: openai.OpenAI
    scripted: set[str] = field(default_factory=set)
    """Models given a script of their own, set back to healthy by `reset`."""

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def aclient(self) -> openai.AsyncOpenAI:
        """A new async client: each async test runs on an event loop of its own."""
        return openai.AsyncOpenAI(base_url=self.url, api_key="sk-client", max_retries=0)

    def requests(self, *models: str) -> list[RecordedRequest]:
        return [r for model in models for r in self.upstream.requests_for(model)]

    def models_called(self) -> set[str]:
        """The models of the chat completions asked (not the model list the gateway reads)."""
        return {r.model for r in self.upstream.requests if r.path.endswith("/completions")}

    def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
        return httpx.post(
            f"{self.url}{path}", content=content, headers=headers, timeout=30, **kwargs
        )

    def script(self, model: str, script: ModelScript) -> None:
        self.upstream.set_script(model, script)
        self.scripted.add(model)

    def reset(self) -> None:
        """Healthy scripts that report cost, and an empty request log."""
        self.upstream.reset()
        for model in self.scripted:
            self.upstream.set_script(model, healthy())
        self.script(OUTER, healthy(response_model=CONCRETE))


def healthy(**fields: Any) -> ModelScript:
    return ModelScript(cost_per_token=COST_PER_TOKEN, **fields)


def settings(upstream: ScriptedOpenAIServer, **overrides: Any) -> dict[str, Any]:
    return {
        "analysis_models": PANEL,
        "server_tools": [],
        "base_url": upstream.base_url,
        "api_key": UPSTREAM_KEY,
        "max_retries": 0,
        **overrides,
    }


def start(
    upstream: ScriptedOpenAIServer, *, model_settings: dict[str, Any] | None = None, **app: Any
) -> FusionServer:
    models = fusion_models(**(model_settings or settings(upstream)))
    return FusionServer(wire_schema.wrap(create_app(models, **app)))


def running_gateway(**app: Any) -> Iterator[Gateway]:
    """A gateway for a whole module (its `gateway` fixture resets it for each test)."""
    with ScriptedOpenAIServer(default=healthy()) as upstream, start(upstream, **app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-client", max_retries=0)
        yield Gateway(server, upstream, client)
        client.close()


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The hosted error object, checked for its shape: `code` is the HTTP status."""
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == response.status_code
    assert isinstance(error["code"], int)
    assert isinstance(error["message"], str)
    assert error["message"]
    assert (
        {"code", "message", "metadata"}
        <= set(error)
        <= {
            "code",
            "message",
            "metadata",
            "availability",
        }
    )
    return error


def tool_names(request: RecordedRequest) -> list[str]:
    return [tool["function"]["name"] for tool in request.body.get("tools") or []]


# --- `langchain-fusion serve` as a process ------------------------------------------------

COMMAND = str(Path(sys.executable).with_name("langchain-fusion"))
CAPPED_REQUEST: dict[str, Any] = {
    "model": "openrouter/fusion",
    "messages": [{"role": "user", "content": "Is nuclear power part of a low-carbon grid?"}],
    "tool_choice": "required",
    "max_tokens": 50,
    "tools": [{"type": "openrouter:fusion", "parameters": {"max_completion_tokens": 50}}],
}
"""A fusion request with small output limits: its worst case fits a modest spend cap."""


@contextlib.contextmanager
def serve_command(
    upstream: ScriptedOpenAIServer, *args: str, lines: int = 1, tools: bool = False
) -> Iterator[tuple[str, str]]:
    """`langchain-fusion serve` on a free port, on `upstream`: its base URL and its first
    `lines` start-up lines (stderr); stopped with Ctrl-C. `tools` gives the panel and the
    judge the local research tools (`--no-tools` otherwise)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "FUSION_"))}
    env.update(OPENROUTER_BASE_URL=upstream.base_url, OPENROUTER_API_KEY="sk-or-test-upstream")
    process = subprocess.Popen(
        [
            *(COMMAND, "serve", "--port", "0", "--models", ",".join(PANEL)),
            *([] if tools else ["--no-tools"]),
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        said = "".join(process.stderr.readline() for _ in range(lines))
        match = re.search(r"http://127\.0\.0\.1:\d+/v1", said)
        assert match, said + process.stderr.read()
        yield match.group(0), said
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
