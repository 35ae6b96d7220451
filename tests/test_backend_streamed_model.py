"""The backend's chat model names the concrete model from a stream's first chunk.

An OpenAI-compatible stream repeats `model` in every chunk, but `langchain-openai` reports
it (`response_metadata["model_name"]`) only on the finishing chunk; the gateway needs it
from the first, to name the model in its first byte. The whole message still carries it
once: LangChain concatenates string metadata when chunks are added.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.messages import AIMessageChunk

from langchain_fusion.backends import OpenAICompatibleBackend
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

ALIAS = "~openai/gpt-latest"
CONCRETE = "openai/gpt-5.1"


@pytest.fixture(scope="module")
def backend() -> Iterator[OpenAICompatibleBackend]:
    script = ModelScript(reply="one two three four", response_model=CONCRETE)
    with ScriptedOpenAIServer({ALIAS: script}) as server:
        yield OpenAICompatibleBackend(base_url=server.base_url, api_key="k", max_retries=0)


def _check(chunks: list[AIMessageChunk]) -> None:
    assert len(chunks) > 2
    assert chunks[0].response_metadata["model_name"] == CONCRETE  # the first chunk names it
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.response_metadata["model_name"] == CONCRETE  # once, not concatenated
    assert total.text == "one two three four"


def test_a_stream_names_the_concrete_model_in_its_first_chunk(
    backend: OpenAICompatibleBackend,
) -> None:
    model = backend.chat_model(ALIAS)
    _check([c for c in model.stream("hi") if isinstance(c, AIMessageChunk)])
    assert model.invoke("hi").response_metadata["model_name"] == CONCRETE


async def test_an_async_stream_names_the_concrete_model_in_its_first_chunk(
    backend: OpenAICompatibleBackend,
) -> None:
    model = backend.chat_model(ALIAS)
    _check([c async for c in model.astream("hi") if isinstance(c, AIMessageChunk)])
    streamed = backend.chat_model(ALIAS).model_copy(update={"streaming": True})
    assert (await streamed.ainvoke("hi")).response_metadata["model_name"] == CONCRETE
