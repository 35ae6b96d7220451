"""The backend's chat model reports what OpenRouter adds to a chat completion, on all four
call paths, through public extension points only (`backends/tap.py`).

The cost (`usage.cost`), the URL citations (`annotations`) and the concrete model that
answers (`model`, from a stream's first chunk) reach `response_metadata`; the whole message
carries each once. The scripted server sends all three as OpenRouter does.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessageChunk
from pydantic import SecretStr

from langchain_fusion.backends import (
    ChatOpenAICompatible,
    OpenAICompatibleBackend,
    runs_hosted_tools,
    runs_server_tools,
)
from langchain_fusion.backends.tap import ResponseTap
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

ALIAS = "~openai/gpt-latest"
CONCRETE = "openai/gpt-5.1"
CHEAP, DEAR = "cheap-model", "dear-model"
PAGES = [{"url": "https://a.example/one", "title": "One"}, {"url": "https://b.example/two"}]
CITATIONS = [
    {"type": "url_citation", "url_citation": {"url": p["url"], "title": p.get("title", "")}}
    for p in PAGES
]
REPLY = "one two three four"
# The scripted server counts words: 1 prompt token ("hi") and 4 completion tokens.
COST = 5 * 0.01


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedOpenAIServer]:
    scripts = {
        ALIAS: ModelScript(
            reply=REPLY, response_model=CONCRETE, cost_per_token=0.01, annotations=PAGES
        ),
        CHEAP: ModelScript(reply=REPLY, cost_per_token=0.001, tokens_per_second=400),
        DEAR: ModelScript(reply=REPLY, cost_per_token=1.0, tokens_per_second=400),
        "plain": ModelScript(reply=REPLY),
    }
    with ScriptedOpenAIServer(scripts) as running:
        yield running


@pytest.fixture
def backend(server: ScriptedOpenAIServer) -> Iterator[OpenAICompatibleBackend]:
    backend = OpenAICompatibleBackend(base_url=server.base_url, api_key="k", max_retries=2)
    yield backend
    backend.close()


def _whole(chunks: list[BaseMessageChunk]) -> BaseMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


def _check_message(message: Any) -> None:
    metadata = message.response_metadata
    assert metadata["cost"] == pytest.approx(COST)
    assert metadata["annotations"] == CITATIONS
    assert metadata["model_name"] == CONCRETE  # once, not concatenated
    assert message.text == REPLY


def _check_stream(chunks: list[BaseMessageChunk]) -> None:
    assert len(chunks) > 3
    assert chunks[0].response_metadata["model_name"] == CONCRETE  # from the first chunk
    assert [c.response_metadata.get("cost") for c in chunks].count(None) == len(chunks) - 1
    _check_message(_whole(chunks))


def test_invoke_reports_cost_citations_and_model(backend: OpenAICompatibleBackend) -> None:
    _check_message(backend.chat_model(ALIAS).invoke("hi"))


async def test_ainvoke_reports_cost_citations_and_model(backend: OpenAICompatibleBackend) -> None:
    _check_message(await backend.chat_model(ALIAS).ainvoke("hi"))


def test_stream_reports_them_and_names_the_model_first(backend: OpenAICompatibleBackend) -> None:
    _check_stream(list(backend.chat_model(ALIAS).stream("hi")))
    streaming = backend.chat_model(ALIAS).model_copy(update={"streaming": True})
    _check_message(streaming.invoke("hi"))  # invoke over a stream


async def test_astream_reports_them_and_names_the_model_first(
    backend: OpenAICompatibleBackend,
) -> None:
    _check_stream([c async for c in backend.chat_model(ALIAS).astream("hi")])
    streaming = backend.chat_model(ALIAS).model_copy(update={"streaming": True})
    _check_message(await streaming.ainvoke("hi"))


class _Heard(BaseCallbackHandler):
    def __init__(self) -> None:
        self.names: list[str | None] = []
        self.ended: list[Any] = []

    def on_llm_new_token(self, token: str, *, chunk: Any = None, **kwargs: Any) -> None:
        self.names.append(chunk.message.response_metadata.get("model_name"))

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.ended.append(response.generations[0][0].message)


def test_callbacks_hear_the_model_on_the_first_token_and_the_cost_at_the_end(
    backend: OpenAICompatibleBackend,
) -> None:
    heard = _Heard()
    list(backend.chat_model(ALIAS).stream("hi", config={"callbacks": [heard]}))
    assert heard.names[0] == CONCRETE
    assert heard.names[1:] == [None] * (len(heard.names) - 1)
    _check_message(heard.ended[0])


async def test_concurrent_streams_on_one_pool_keep_their_own_costs(
    backend: OpenAICompatibleBackend,
) -> None:
    async def cost(slug: str) -> float:
        chunks = [c async for c in backend.chat_model(slug).astream("hi")]
        return float(_whole(chunks).response_metadata["cost"])

    for _ in range(3):
        cheap, dear, cheap_again = await asyncio.gather(cost(CHEAP), cost(DEAR), cost(CHEAP))
        assert (cheap, dear, cheap_again) == pytest.approx((0.005, 5.0, 0.005))


def test_a_retried_call_reports_the_answer_it_got(server: ScriptedOpenAIServer) -> None:
    server.set_script("flaky", ModelScript(reply=REPLY, cost_per_token=0.01, fail_first=1))
    backend = OpenAICompatibleBackend(base_url=server.base_url, api_key="k", max_retries=1)
    try:
        assert backend.chat_model("flaky").invoke("hi").response_metadata["cost"] == COST
        server.set_script("flaky", ModelScript(reply=REPLY, cost_per_token=0.01, fail_first=1))
        chunks = list(backend.chat_model("flaky").stream("hi"))
        assert _whole(chunks).response_metadata["cost"] == pytest.approx(COST)
    finally:
        backend.close()
    assert [r.status_code for r in server.requests_for("flaky")] == [500, 200, 500, 200]


def test_tapped_requests_ask_for_an_uncompressed_body(
    server: ScriptedOpenAIServer, backend: OpenAICompatibleBackend
) -> None:
    backend.chat_model("plain").invoke("hi")
    assert server.requests_for("plain")[-1].headers["accept-encoding"] == "identity"


def test_without_cost_or_citations_the_metadata_has_none(backend: OpenAICompatibleBackend) -> None:
    message = backend.chat_model("plain").invoke("hi")
    assert "cost" not in message.response_metadata
    assert "annotations" not in message.response_metadata
    whole = _whole(list(backend.chat_model("plain").stream("hi")))
    assert "cost" not in whole.response_metadata
    assert whole.response_metadata["model_name"] == "plain"


def test_a_model_made_without_a_backend_reports_them_too(server: ScriptedOpenAIServer) -> None:
    model = ChatOpenAICompatible(
        model=ALIAS, base_url=server.base_url, api_key=SecretStr("k"), stream_usage=True
    )
    _check_message(model.invoke("hi"))
    _check_stream(list(model.stream("hi")))


def test_with_clients_of_your_own_it_works_as_chat_openai(server: ScriptedOpenAIServer) -> None:
    import openai

    with openai.DefaultHttpxClient() as client:
        model = ChatOpenAICompatible(
            model=ALIAS, base_url=server.base_url, api_key=SecretStr("k"), http_client=client
        )
        message = model.invoke("hi")
    assert isinstance(message, AIMessage)
    assert message.text == REPLY
    assert "cost" not in message.response_metadata


def test_the_old_server_tools_name_still_works_with_a_warning(
    server: ScriptedOpenAIServer,
) -> None:
    with pytest.warns(DeprecationWarning, match="runs_hosted_tools"):
        old = OpenAICompatibleBackend(base_url=server.base_url, server_tools=True)
    assert old.runs_hosted_tools is True
    assert old.hosts_tools
    with pytest.warns(DeprecationWarning, match="runs_hosted_tools"):
        assert old.server_tools is True
    with pytest.warns(DeprecationWarning, match="hosts_tools"):
        assert old.runs_server_tools
    model = old.chat_model("plain")
    with pytest.warns(DeprecationWarning, match="runs_hosted_tools"):
        assert runs_server_tools(model, old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = OpenAICompatibleBackend(base_url=server.base_url, runs_hosted_tools=False)
        assert not new.hosts_tools
        assert not runs_hosted_tools(new.chat_model("plain"), new)
        assert OpenAICompatibleBackend(base_url="https://openrouter.ai/api/v1").hosts_tools


def test_stream_chunks_are_ai_message_chunks(backend: OpenAICompatibleBackend) -> None:
    assert all(isinstance(c, AIMessageChunk) for c in backend.chat_model(CHEAP).stream("hi"))


def test_a_tap_starts_afresh_for_each_attempt() -> None:
    tap = ResponseTap()
    tap.begin("text/event-stream")
    tap.feed(b'data: {"model": "first", "usage": {"cost": 1.5}, "choices": []}\n\n')
    assert (tap.model, tap.cost) == ("first", 1.5)
    tap.begin("application/json")  # the SDK's retry: a new response
    tap.feed(b'{"model": "second", "choices": [{"index": 0, "message": {"annotations": [1]}}]}')
    assert (tap.model, tap.cost, tap.annotations) == (None, None, {})  # read whole at the end
    tap.end()
    assert (tap.model, tap.cost, tap.annotations) == ("second", None, {0: [1]})


def test_extras_read_after_the_last_chunk_come_in_one_more_chunk() -> None:
    from langchain_core.outputs import ChatGenerationChunk

    from langchain_fusion.backends.chat_model import _StreamExtras

    tap = ResponseTap(model=CONCRETE)
    extras = _StreamExtras(tap)
    first = ChatGenerationChunk(message=AIMessageChunk(content="a"))
    extras.apply(first)
    assert first.message.response_metadata == {"model_name": CONCRETE}
    assert extras.rest() is None
    # The last event (usage, a citation) gave the SDK no chunk of its own.
    tap.cost, tap.annotations = 0.5, {0: CITATIONS[:1]}
    rest = extras.rest()
    assert rest is not None
    assert rest.message.response_metadata == {"cost": 0.5, "annotations": CITATIONS[:1]}
    assert extras.rest() is None  # each extra once


class _Pieces:
    """A response body sent in pieces, one event at a time (sync and async)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces

    async def __aiter__(self) -> Any:
        for piece in self.pieces:
            yield piece

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def _events(whole: bool) -> Any:
    """A stream whose last event gives `langchain-openai` no chunk (`delta: null`) but
    carries the usage: sent in pieces, or as one body given whole (as a mock gives it)."""
    import json

    import httpx2

    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": CONCRETE}
    events = [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "a"}}]},
        {
            **head,
            "choices": [{"index": 0, "delta": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "cost": 0.5},
        },
    ]
    pieces = [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]
    headers = {"content-type": "text/event-stream"}

    def respond(request: Any) -> Any:
        if whole:
            return httpx2.Response(200, headers=headers, content=b"".join(pieces))
        return httpx2.Response(200, headers=headers, stream=_Pieces(pieces))  # type: ignore[arg-type]

    return httpx2.MockTransport(respond)


@pytest.mark.parametrize("whole", [False, True])
def test_extras_of_an_event_that_gave_no_chunk_still_reach_the_message(whole: bool) -> None:
    import httpx2

    from langchain_fusion.backends.tap import AsyncTappingTransport, TappingTransport

    mock = _events(whole)
    model = ChatOpenAICompatible(
        model="m",
        base_url="http://upstream.invalid/v1",
        api_key=SecretStr("k"),
        http_client=httpx2.Client(transport=TappingTransport(mock)),
        http_async_client=httpx2.AsyncClient(transport=AsyncTappingTransport(mock)),
    )
    chunks = list(model.stream("hi"))
    assert _whole(chunks).response_metadata["cost"] == 0.5
    assert chunks[0].response_metadata["model_name"] == CONCRETE

    async def streamed() -> list[BaseMessageChunk]:
        return [c async for c in model.astream("hi")]

    assert _whole(asyncio.run(streamed())).response_metadata["cost"] == 0.5
