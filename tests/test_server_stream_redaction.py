"""A secret split over streamed pieces never leaves (issue 18, point 2, streams): the
upstream writes the server's key in deltas of 4 characters, so no single SSE event holds
it; what a client concatenates from a stream must not hold it either. On both routes,
fusion and plain, with the sync and async `openai` SDK and httpx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from test_server_support import PANEL, QUESTION, healthy, settings, start

from langchain_fusion.server.redaction import REDACTED, Secrets, StreamRedactor
from langchain_fusion.testing import HostileOpenAIServer

UPSTREAM = "vllm-token-7f3a9c2e1b4d5a6f"
"""The server's own upstream key, not key-shaped: only by-value redaction finds it."""
LEAKY = f"Sure. The token is {UPSTREAM} and nothing else."
CHAT = {
    "model": "openrouter/fusion",
    "messages": [{"role": "user", "content": QUESTION}],
    "tool_choice": "required",
    "tools": [{"type": "openrouter:fusion", "parameters": {"max_completion_tokens": 50}}],
}
RESPONSES = {
    "model": "openrouter/fusion",
    "input": QUESTION,
    "tool_choice": "required",
    "tools": [{"type": "openrouter:fusion", "parameters": {"max_completion_tokens": 50}}],
}


# --- the redactor on its own ---------------------------------------------------------------


def _streamed(secrets: Secrets, pieces: list[str]) -> str:
    redactor = StreamRedactor(secrets)
    return "".join(redactor.feed("s", p) for p in pieces) + redactor.flush("s")


def test_a_secret_split_at_any_point_is_redacted() -> None:
    secrets = Secrets()
    secrets.add(UPSTREAM)
    text = f"a {UPSTREAM} b {UPSTREAM[:-1]}! c"
    for first in range(1, len(text)):
        for second in range(first + 1, len(text), 5):
            out = _streamed(secrets, [text[:first], text[first:second], text[second:]])
            assert UPSTREAM not in out
            assert out == secrets.redact(text)  # what redacting it whole gives


def test_a_key_shaped_string_split_over_pieces_is_redacted() -> None:
    key = "sk-or-v1-0123456789abcdef0123"
    pieces = ["here: s", "k-or", "-v1-0123", "456789ab", "cdef0123 done"]
    out = _streamed(Secrets(), pieces)
    assert key[:12] not in out
    assert out == f"here: {REDACTED} done"


def test_a_key_shaped_run_too_long_to_hold_is_cut_off() -> None:
    out = _streamed(Secrets(), ["x sk-", *["a" * 1000] * 10, " after"])
    assert out == f"x {REDACTED} after"


def test_text_that_starts_no_secret_goes_out_at_once() -> None:
    secrets = Secrets()
    secrets.add(UPSTREAM)
    redactor = StreamRedactor(secrets)
    assert redactor.feed("s", "The answer is 42. ") == "The answer is 42. "
    assert redactor.feed("s", "It is vl") == "It is "  # "vl" may begin the key: held
    assert redactor.feed("s", "ad!") == "vlad!"  # it did not


# --- end to end ----------------------------------------------------------------------------


@pytest.fixture
def hostile() -> Iterator[HostileOpenAIServer]:
    with HostileOpenAIServer(default=healthy(reply=LEAKY), chunk_chars=4) as upstream:
        yield upstream


def _sse_data(text: str) -> list[dict[str, object]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def _chat_text(chunks: list[dict[str, object]]) -> str:
    return "".join(
        str(choice.get("delta", {}).get("content") or "")  # type: ignore[union-attr]
        for chunk in chunks
        for choice in chunk.get("choices") or []  # type: ignore[union-attr]
    )


def _responses_texts(events: list[dict[str, object]]) -> dict[str, str]:
    """Each delta stream concatenated: the answer, and each panelist's."""
    texts: dict[str, str] = {}
    for event in events:
        kind = str(event.get("type"))
        if kind.endswith(".delta") and isinstance(event.get("delta"), str):
            key = f"{kind}:{event.get('panel_index', '')}"
            texts[key] = texts.get(key, "") + str(event["delta"])
    return texts


def _check(hostile: HostileOpenAIServer, texts: list[str]) -> None:
    # The upstream did stream the key in pieces no event could hold whole...
    assert any(
        r.stream and r.response_text and UPSTREAM in r.response_text for r in hostile.requests
    )
    # ...and no stream, concatenated, gives it back; the redaction is visible.
    assert texts
    assert all(UPSTREAM not in text for text in texts), texts
    assert any(REDACTED in text for text in texts)


def test_sync_sdk_streams_on_both_routes(hostile: HostileOpenAIServer) -> None:
    with start(hostile, model_settings=settings(hostile, api_key=UPSTREAM)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        stream: Any = client.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
        chat = [c.model_dump(warnings=False) for c in stream]
        stream = client.responses.create(**RESPONSES, stream=True)  # type: ignore[call-overload]
        events = [e.model_dump(warnings=False) for e in stream]
        client.close()
    texts = _responses_texts(events)
    assert any(key.startswith("response.fusion_call.panel.delta") for key in texts)
    _check(hostile, [_chat_text(chat), *texts.values()])


async def test_async_sdk_streams_on_both_routes(hostile: HostileOpenAIServer) -> None:
    with start(hostile, model_settings=settings(hostile, api_key=UPSTREAM)) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        stream: Any = await client.chat.completions.create(**CHAT, stream=True)  # type: ignore[call-overload]
        chat = [c.model_dump(warnings=False) async for c in stream]
        stream = await client.responses.create(**RESPONSES, stream=True)  # type: ignore[call-overload]
        events = [e.model_dump(warnings=False) async for e in stream]
        await client.close()
    _check(hostile, [_chat_text(chat), *_responses_texts(events).values()])


PLAIN_CHAT = {"model": PANEL[0], "messages": CHAT["messages"], "stream": True}
PLAIN_RESPONSES = {"model": PANEL[0], "input": QUESTION, "stream": True}


def _check_plain(hostile: HostileOpenAIServer, answers: list[httpx.Response]) -> None:
    assert [a.status_code for a in answers] == [200, 200]
    assert not [a for a in answers if UPSTREAM in a.text]
    chat, responses = (_sse_data(a.text) for a in answers)
    _check(hostile, [_chat_text(chat), *_responses_texts(responses).values()])


def test_httpx_plain_streams_on_both_routes(hostile: HostileOpenAIServer) -> None:
    """No fusion: the relayed completion's chunks, and a plain model's Responses stream."""
    with start(hostile, model_settings=settings(hostile, api_key=UPSTREAM)) as server:
        url = server.base_url
        answers = [
            httpx.post(f"{url}/chat/completions", json=PLAIN_CHAT, timeout=30),
            httpx.post(f"{url}/responses", json=PLAIN_RESPONSES, timeout=30),
        ]
    _check_plain(hostile, answers)


async def test_async_httpx_plain_streams_on_both_routes(hostile: HostileOpenAIServer) -> None:
    with start(hostile, model_settings=settings(hostile, api_key=UPSTREAM)) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            answers = [
                await client.post("/chat/completions", json=PLAIN_CHAT),
                await client.post("/responses", json=PLAIN_RESPONSES),
            ]
    _check_plain(hostile, answers)
