"""Nested validation (issue 18, point 5) and body limits (point 6): every model a request
can make the gateway call passes the allow-list, fusion never nests and its aliases are
never sent upstream as models; a body is read no further than the limit and no longer
than the read timeout; a conversation too large to convert is refused up front."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from test_server_support import QUESTION, error_of, healthy, start

from langchain_fusion.server import Policy
from langchain_fusion.server.admission import MAX_MESSAGES
from langchain_fusion.server.errors import GatewayError
from langchain_fusion.server.gateway import read_limited
from langchain_fusion.testing import ScriptedOpenAIServer

USER = [{"role": "user", "content": QUESTION}]


def _fusion_tool(**parameters: Any) -> dict[str, Any]:
    return {"type": "openrouter:fusion", "parameters": parameters}


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[str, ScriptedOpenAIServer]]:
    # A glob that covers the aliases themselves: they must still never run as models.
    policy = Policy(allow_models=("panel-*", "openrouter/*", "~anthropic/*", "vendor/ok"))
    with ScriptedOpenAIServer(default=healthy()) as upstream, start(upstream, policy=policy) as s:
        yield s.base_url, upstream


NESTED: list[tuple[str, dict[str, Any], int, str]] = [
    (
        "/chat/completions",
        {
            "model": "openrouter/fusion",
            "messages": USER,
            "tool_choice": "required",
            "tools": [_fusion_tool(tools=[_fusion_tool(analysis_models=["evil/a", "evil/b"])])],
        },
        400,
        "cannot be nested",
    ),
    (
        "/responses",
        {
            "model": "openrouter/fusion",
            "input": QUESTION,
            "tools": [_fusion_tool(tools=[{"type": "openrouter:fusion"}])],
        },
        400,
        "cannot be nested",
    ),
    (
        "/chat/completions",
        {
            "model": "openrouter/fusion",
            "messages": USER,
            "tools": [
                _fusion_tool(
                    tools=[{"type": "openrouter:advisor", "parameters": {"model": "evil/x"}}]
                )
            ],
        },
        403,
        "evil/x",
    ),
    (
        "/chat/completions",
        {
            "model": "openrouter/fusion",
            "messages": USER,
            "tools": [_fusion_tool(analysis_models=["openrouter/fusion", "panel-a"])],
        },
        400,
        "fusion alias",
    ),
    (
        "/chat/completions",
        {
            "model": "openrouter/fusion",
            "messages": USER,
            "tools": [_fusion_tool(model="openrouter/fusion-flash")],
        },
        400,
        "fusion alias",
    ),
    (
        "/chat/completions",
        {
            "model": "vendor/ok",
            "messages": USER,
            "plugins": [{"id": "fusion", "analysis_models": ["openrouter/fusion"]}],
        },
        400,
        "fusion alias",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "words"), NESTED, ids=[n[3] + str(i) for i, n in enumerate(NESTED)]
)
def test_nested_models_pass_the_same_rules(
    guarded: tuple[str, ScriptedOpenAIServer],
    path: str,
    body: dict[str, Any],
    status: int,
    words: str,
) -> None:
    url, upstream = guarded
    upstream.reset()
    response = httpx.post(f"{url}{path}", json=body, timeout=30)
    assert response.status_code == status, response.text
    assert words in error_of(response)["message"]
    assert upstream.requests == []


def test_the_aliases_are_never_sent_upstream(guarded: tuple[str, ScriptedOpenAIServer]) -> None:
    url, upstream = guarded
    upstream.reset()
    body = {
        "model": "openrouter/fusion",
        "messages": USER,
        "tool_choice": "required",
        "max_tokens": 50,
    }
    body["tools"] = [_fusion_tool(max_completion_tokens=50)]
    answered = httpx.post(f"{url}/chat/completions", json=body, timeout=60)
    assert answered.status_code == 200, answered.text
    assert upstream.requests
    assert not [r.model for r in upstream.requests if r.model.startswith("openrouter/fusion")]


def test_too_many_messages_are_a_413_before_any_call(
    guarded: tuple[str, ScriptedOpenAIServer],
) -> None:
    url, upstream = guarded
    upstream.reset()
    many = [{"role": "user", "content": "hi"}] * (MAX_MESSAGES + 1)
    for body in (
        {"model": "openrouter/fusion", "messages": many},
        {"model": "vendor/ok", "messages": many},
    ):
        response = httpx.post(f"{url}/chat/completions", json=body, timeout=60)
        assert response.status_code == 413, response.text
        assert str(MAX_MESSAGES) in error_of(response)["message"]
    assert upstream.requests == []


def _request(chunks: list[bytes], *, then_wait: bool = False) -> tuple[Request, list[int]]:
    """A request whose body arrives in `chunks` (then never ends, with `then_wait`);
    and how many chunks the server asked for."""
    asked = [0]

    async def receive() -> dict[str, Any]:
        if asked[0] < len(chunks):
            asked[0] += 1
            return {"type": "http.request", "body": chunks[asked[0] - 1], "more_body": True}
        if then_wait:
            await asyncio.Event().wait()  # a client that stops sending
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    return Request(scope, receive), asked


def test_a_chunked_body_is_read_no_further_than_the_limit() -> None:
    request, asked = _request([b"x" * 1024] * 1_000)  # 1 MB, no content-length
    with pytest.raises(GatewayError) as refused:
        asyncio.run(read_limited(request, 10 * 1024, timeout_s=30))
    assert refused.value.status == 413
    assert asked[0] == 11  # stopped at the chunk that crossed the limit


def test_an_incomplete_body_times_out() -> None:
    request, _ = _request([b'{"model": '], then_wait=True)
    with pytest.raises(GatewayError) as refused:
        asyncio.run(read_limited(request, 1024, timeout_s=0.2))
    assert refused.value.status == 408


def test_a_reader_too_slow_for_the_stream_buffer_is_cut_off_and_the_run_stopped() -> None:
    from langchain_fusion.server.gateway import SlowReader, with_keepalive

    produced: list[int] = []
    closed = asyncio.Event()

    async def deliberation() -> Any:
        try:
            for number in range(100_000):  # far more than any buffer
                produced.append(number)
                yield number
        finally:
            closed.set()

    async def slow_client() -> None:
        stream = with_keepalive(deliberation(), 30.0, buffer=4, slow_reader_s=0.05)
        assert await anext(stream) == 0
        await asyncio.wait_for(closed.wait(), timeout=30)  # the client stops reading...
        with pytest.raises(SlowReader) as cut:  # ...and is cut off with an error
            await anext(stream)
        assert cut.value.status == 408
        await stream.aclose()

    asyncio.run(slow_client())
    assert len(produced) < 10  # the run stopped at the buffer: memory did not grow
