"""A big request's conversion runs off the event loop (issue 18, point 6): `ChatOpenAIOffLoop`
sends a call of many messages from a worker thread, streamed or not, with the same answer
and the same token callbacks as the async path; a small one stays on the loop. (How long
the loop waits is measured in `bench/event_loop.py`, not here.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from langchain_fusion.backends.off_loop import OFF_LOOP_MESSAGES, ChatOpenAIOffLoop, is_big
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer


class Spy(ChatOpenAIOffLoop):
    """Records the thread each sync call ran on."""

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return super()._generate(*args, **kwargs)

    def _stream(self, *args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        yield from super()._stream(*args, **kwargs)


threads: list[int] = []


class Tokens(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


@pytest.fixture
def upstream() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as server:
        yield server


def _model(server: ScriptedOpenAIServer, **kwargs: Any) -> Spy:
    return Spy(model="m", base_url=server.base_url, api_key="k", max_retries=0, **kwargs)  # type: ignore[arg-type]


def _conversation(count: int) -> list[BaseMessage]:
    turns: list[BaseMessage] = []
    for index in range(count - 1):
        turns.append(HumanMessage(f"q{index}") if index % 2 == 0 else AIMessage(f"a{index}"))
    return [*turns, HumanMessage("Summarise.")]


def test_what_counts_as_big() -> None:
    assert not is_big(_conversation(3))
    assert is_big(_conversation(OFF_LOOP_MESSAGES))
    assert is_big([HumanMessage("x" * 300_000)])


async def test_a_big_call_runs_in_a_worker_thread_with_the_same_answer(
    upstream: ScriptedOpenAIServer,
) -> None:
    threads.clear()
    model = _model(upstream)
    loop_thread = threading.get_ident()
    small = await model.ainvoke(_conversation(3))
    big = await model.ainvoke(_conversation(OFF_LOOP_MESSAGES + 1))
    assert len(threads) == 1  # the small call stayed async; the big one took the sync path
    assert threads[0] != loop_thread  # in a worker thread
    assert isinstance(big.content, str)
    assert big.content
    assert big.usage_metadata
    assert big.usage_metadata["total_tokens"] > 0
    assert small.content
    sent = upstream.requests[-1].body["messages"]
    assert len(sent) == OFF_LOOP_MESSAGES + 1
    assert sent[-1] == {"role": "user", "content": "Summarise."}


async def test_a_big_stream_hands_its_chunks_and_tokens_to_the_loop(
    upstream: ScriptedOpenAIServer,
) -> None:
    threads.clear()
    model = _model(upstream)
    tokens = Tokens()
    config: Any = {"callbacks": [tokens]}
    pieces = [c async for c in model.astream(_conversation(OFF_LOOP_MESSAGES), config)]
    assert len(threads) == 1
    assert threads[0] != threading.get_ident()
    text = "".join(str(piece.content) for piece in pieces)
    assert text == upstream.requests[-1].response_text
    assert "".join(tokens.tokens) == text  # every token reported, once
    # streaming=True through ainvoke: the token callbacks fire as well
    tokens.tokens.clear()
    message = await _model(upstream, streaming=True).ainvoke(
        _conversation(OFF_LOOP_MESSAGES), config
    )
    assert "".join(tokens.tokens) == message.content


async def test_a_failing_big_call_raises_on_the_loop(upstream: ScriptedOpenAIServer) -> None:
    upstream.set_script("m", ModelScript(status_code=500))
    with pytest.raises(Exception, match="500"):
        await _model(upstream).ainvoke(_conversation(OFF_LOOP_MESSAGES))
    with pytest.raises(Exception, match="500"):
        [c async for c in _model(upstream).astream(_conversation(OFF_LOOP_MESSAGES))]
