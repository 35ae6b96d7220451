"""No configured secret leaves the gateway (issue 18, point 2): the server's upstream key
(not shaped like `sk-...`, as a vLLM token is), a caller's own key under bring-your-own-
key, and a server key, against an upstream that quotes the Authorization header it got
in every error. Bodies, SSE events, headers and log records are all checked."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import httpx
import openai
import pytest
from test_server_support import PANEL, QUESTION, healthy, settings, start

from langchain_fusion.server import KeyRing, redaction
from langchain_fusion.server import keys as server_keys
from langchain_fusion.testing import HostileOpenAIServer, ModelScript

UPSTREAM = "vllm-token-7f3a9c2e1b4d5a6f"
"""The server's own upstream key: not key-shaped, so only by-value redaction finds it."""
CALLER = "tenant-upstream-9e8d7c6b5a4f"
"""A caller's own upstream key (bring-your-own-key), not key-shaped either."""
SERVER_KEY = "team-gateway-key-31415926"
FORCED = {
    "model": "openrouter/fusion",
    "messages": [{"role": "user", "content": QUESTION}],
    "tool_choice": "required",
    "max_tokens": 50,
    "tools": [{"type": "openrouter:fusion", "parameters": {"max_completion_tokens": 50}}],
}
RESPONSES = {
    "model": "openrouter/fusion",
    "input": QUESTION,
    "tool_choice": "required",
    "max_output_tokens": 50,
    "tools": [{"type": "openrouter:fusion", "parameters": {"max_completion_tokens": 50}}],
}


@pytest.fixture
def hostile() -> Iterator[HostileOpenAIServer]:
    with HostileOpenAIServer(default=healthy()) as upstream:
        yield upstream


def _scenarios(base_url: str, headers: dict[str, str]) -> list[httpx.Response]:
    """A panelist failing, every panelist failing, the plain relay failing: each on
    both routes, plain and streamed."""

    def post(path: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(f"{base_url}{path}", json=body, headers=headers, timeout=30)

    return [
        post("/chat/completions", FORCED),
        post("/chat/completions", {**FORCED, "stream": True}),
        post("/responses", RESPONSES),
        post("/responses", {**RESPONSES, "stream": True}),
        post("/chat/completions", {"model": "vendor/denied", "messages": FORCED["messages"]}),
        post("/responses", {"model": "vendor/denied", "input": QUESTION}),
    ]


def _assert_nowhere(secret: str, responses: list[httpx.Response], logs: str) -> None:
    for response in responses:
        assert secret not in response.text, response.text
        assert secret not in json.dumps(dict(response.headers))
    assert secret not in logs


def test_the_servers_upstream_key_never_comes_back(
    hostile: HostileOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hostile.set_script(PANEL[0], ModelScript(status_code=500))
    hostile.set_script("vendor/denied", ModelScript(status_code=401))
    model_settings = settings(hostile, api_key=UPSTREAM)
    with start(hostile, model_settings=model_settings, api_key=SERVER_KEY) as server:
        answers = _scenarios(server.base_url, {"authorization": f"Bearer {SERVER_KEY}"})
        hostile.set_script(PANEL[1], ModelScript(status_code=500))  # now every panelist fails
        answers += _scenarios(server.base_url, {"authorization": f"Bearer {SERVER_KEY}"})[:4]
    # The upstream did quote the key in its errors...
    failed = [r for r in hostile.requests if r.error is not None]
    assert failed
    assert all(UPSTREAM in r.error["message"] for r in failed if r.error)
    # ...and the answers carry the failures, but not the key.
    assert any("failed_models" in a.text or "failed" in a.text for a in answers)
    assert [a.status_code for a in answers[:4]] == [200] * 4
    assert any("[redacted]" in a.text for a in answers)
    _assert_nowhere(UPSTREAM, answers, caplog.text)
    _assert_nowhere(SERVER_KEY, answers, caplog.text)


def test_a_callers_own_key_never_comes_back(
    hostile: HostileOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hostile.set_script(PANEL[0], ModelScript(status_code=500))
    hostile.set_script("vendor/denied", ModelScript(status_code=401))
    ring = KeyRing([server_keys.key_from_secret("team", SERVER_KEY)], byok=True)
    with start(hostile, keys=ring) as server:
        headers = {"authorization": f"Bearer {SERVER_KEY}", "x-upstream-api-key": CALLER}
        answers = _scenarios(server.base_url, headers)
    assert {r.headers["authorization"] for r in hostile.requests} == {f"Bearer {CALLER}"}
    assert any(r.error and CALLER in r.error["message"] for r in hostile.requests)
    _assert_nowhere(CALLER, answers, caplog.text)
    _assert_nowhere(SERVER_KEY, answers, caplog.text)


async def test_sdk_clients_sync_and_async_never_see_the_key(hostile: HostileOpenAIServer) -> None:
    hostile.set_script(PANEL[0], ModelScript(status_code=500))
    hostile.set_script("vendor/denied", ModelScript(status_code=401))
    model_settings = settings(hostile, api_key=UPSTREAM)
    with start(hostile, model_settings=model_settings) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        completion = client.chat.completions.create(**FORCED)  # type: ignore[call-overload]
        aclient = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        streamed = [
            chunk.model_dump_json()
            async for chunk in await aclient.chat.completions.create(  # type: ignore[call-overload]
                **FORCED, stream=True
            )
        ]
        with pytest.raises(openai.AuthenticationError) as refused:
            await aclient.chat.completions.create(
                model="vendor/denied", messages=[{"role": "user", "content": QUESTION}]
            )
        await aclient.close()
        client.close()
    texts = [completion.model_dump_json(), *streamed, json.dumps(refused.value.body)]
    assert any("[redacted]" in text for text in texts)
    assert not [text for text in texts if UPSTREAM in text]


def test_a_log_record_made_while_the_pattern_is_built_does_not_deadlock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A garbage collection inside the pattern's build can run a finaliser that logs (the
    # OpenAI SDK's client closing its pool logs httpcore's debug lines): the log record
    # factory then redacts on the same thread, inside the build.
    secrets = redaction.Secrets()
    secrets.add("a-self-hosted-token-0123")
    build = redaction._forms
    logged: list[str] = []

    def forms_that_log(secret: str) -> set[str]:
        logged.append(secrets.redact(f"closing a pool that held {secret}"))
        return build(secret)

    monkeypatch.setattr(redaction, "_forms", forms_that_log)
    finished = threading.Event()
    worker = threading.Thread(target=lambda: (secrets.pattern(), finished.set()), daemon=True)
    worker.start()
    worker.join(timeout=30)  # generous: a deadlock never finishes, a build takes microseconds
    assert finished.is_set(), "Secrets.pattern() deadlocked on its own lock"
    assert logged
    assert all("0123" not in line for line in logged)
    assert secrets.redact("token a-self-hosted-token-0123") == f"token {redaction.REDACTED}"
