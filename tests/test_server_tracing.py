"""No secret reaches a LangSmith trace of the gateway (issue 18, point 2, traces).

`LANGSMITH_TRACING=true` with `LANGSMITH_ENDPOINT` at a loopback stand-in of the LangSmith
API (`test_langsmith.LangSmithStandIn`, every transport the client can be told to use):
the server's upstream key is in a caller's prompt (inputs), in a panelist's answer
(outputs) and in a failing panelist's upstream error (the run's error). Every posted
payload is free of it, and the runs were traced all the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import langsmith.utils
import openai
import pytest
import wire_schema
from test_langsmith import TRANSPORTS, LangSmithStandIn
from test_server_support import PANEL, QUESTION, healthy, settings

from langchain_fusion.server import FusionServer, create_app, fusion_models
from langchain_fusion.server.redaction import REDACTED
from langchain_fusion.testing import HostileOpenAIServer, ModelScript

UPSTREAM = "vllm-token-5e4d3c2b1a09f8e7"
"""The server's upstream key, not key-shaped: only by-value redaction finds it."""
PROMPT = f"{QUESTION} (my colleague said our token is {UPSTREAM})"
CHAT = {
    "model": "openrouter/fusion",
    "messages": [{"role": "user", "content": PROMPT}],
    "tool_choice": "required",
    "tools": [{"type": "openrouter:fusion", "parameters": {"max_completion_tokens": 50}}],
}
RESPONSES = {**{k: v for k, v in CHAT.items() if k != "messages"}, "input": PROMPT}


@pytest.fixture(params=list(TRANSPORTS))
def langsmith_api(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LangSmithStandIn]:
    with LangSmithStandIn(**TRANSPORTS[request.param]) as api:
        monkeypatch.setenv("LANGSMITH_TRACING", "true")
        monkeypatch.setenv("LANGSMITH_ENDPOINT", api.url())
        monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2_pt_FAKE-key-of-the-stand-in")
        monkeypatch.setenv("LANGSMITH_PROJECT", "gateway-tests")
        langsmith.utils.get_env_var.cache_clear()  # langsmith reads its variables once
        yield api
    langsmith.utils.get_env_var.cache_clear()


@pytest.fixture
def hostile() -> Iterator[HostileOpenAIServer]:
    leaky = healthy(reply=f"As you said, the token is {UPSTREAM}.")
    with HostileOpenAIServer(default=leaky) as upstream:
        upstream.set_script(PANEL[1], ModelScript(status_code=500))  # its error quotes the key
        yield upstream


async def test_no_secret_reaches_a_trace(
    langsmith_api: LangSmithStandIn, hostile: HostileOpenAIServer
) -> None:
    app = create_app(fusion_models(**settings(hostile, api_key=UPSTREAM)))
    with FusionServer(wire_schema.wrap(app)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        completion = client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
        client.close()
        # httpx: the openai SDK raises on any stream event with an `error` field, which
        # the failing panelist's `panel.failed` has.
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as aclient:
            streamed = await aclient.post("/responses", json={**RESPONSES, "stream": True})
    events = [
        json.loads(line[6:])["type"]
        for line in streamed.text.splitlines()
        if line.startswith("data: {")
    ]
    app.state.gateway.tracing.close()  # what the client still buffers is posted

    assert completion.choices[0].message.content
    assert events[-1] == "response.completed"
    # The upstream was given the key and did echo it...
    assert any(r.error and UPSTREAM in r.error["message"] for r in hostile.requests)
    # ...the runs were traced, the failing panelist's too, redacted...
    runs = langsmith_api.runs()
    names = {run.get("name") for run in runs.values()}
    assert {"fusion", f"panel:{PANEL[0]}"} <= names, names
    errors = [str(run["error"]) for run in runs.values() if run.get("error")]
    assert any(REDACTED in error for error in errors), errors
    assert any(REDACTED in json.dumps(run.get("inputs"), default=str) for run in runs.values())
    # ...and no posted byte carries the key.
    posted = [r for r in langsmith_api.requests if r.method in ("POST", "PATCH")]
    assert posted
    assert not [r.path for r in posted if UPSTREAM.encode() in r.body]
