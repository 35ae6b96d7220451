"""`ChatOpenAICompatible`: `ChatOpenAI` that also reports what OpenRouter adds.

It overrides only `BaseChatModel`'s documented extension points (`_generate`, `_agenerate`,
`_stream`, `_astream`, each calling `ChatOpenAI`'s own) and reads the extra fields off the
wire through its HTTP clients' `TappingTransport` (`backends/tap.py`), never through
`langchain-openai`'s private converters.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any

import httpx2 as httpx
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import model_validator

from langchain_fusion.backends.off_loop import ChatOpenAIOffLoop
from langchain_fusion.backends.tap import (
    ResponseTap,
    tapped_async_http_client,
    tapped_http_client,
    tapping,
)


class ChatOpenAICompatible(ChatOpenAIOffLoop):
    """`ChatOpenAI` that also surfaces what OpenRouter adds to a chat completion.

    The cost (`usage.cost`, USD) lands in `response_metadata["cost"]`, the pages its
    server-side web tools read (`message.annotations` of type `url_citation`) in
    `response_metadata["annotations"]`, for `invoke` and `stream` alike. A stream's first
    chunk names the concrete model that answers (`response_metadata["model_name"]`, the
    upstream's `model`), not only its last, so a consumer can name it from the first byte;
    the whole message names it once.

    A big request (`backends/off_loop.py`) is converted and sent from a worker thread, so a
    server's event loop stays free.

    Needs HTTP clients on a `TappingTransport`: the default ones are, and so are an
    `OpenAICompatibleBackend`'s; with clients of your own (`http_client=`) the model works
    as `ChatOpenAI` does, without these fields.
    """

    @model_validator(mode="before")
    @classmethod
    def _tapped_clients(cls, values: Any) -> Any:
        if isinstance(values, dict) and not values.get("openai_proxy"):
            sync, async_ = _default_clients()
            values = {"http_client": sync, "http_async_client": async_, **values}
        return values

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with tapping(ResponseTap()) as tap:
            result = super()._generate(messages, stop, run_manager, **kwargs)
        return _with_extras(result, tap)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with tapping(ResponseTap()) as tap:
            result = await super()._agenerate(messages, stop, run_manager, **kwargs)
        return _with_extras(result, tap)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        tap = ResponseTap()
        extras = _StreamExtras(tap)
        # The callback hears each chunk from us, once it carries the extras.
        chunks = super()._stream(messages, stop, None, **kwargs)
        try:
            while True:
                with tapping(tap):  # the first step sends the request
                    generation = next(chunks, None)
                if generation is None:
                    break
                extras.apply(generation)
                _heard(run_manager, generation)
                yield generation
        finally:
            if isinstance(chunks, Generator):
                chunks.close()  # a stream left early closes its response
        if (rest := extras.rest()) is not None:
            _heard(run_manager, rest)
            yield rest

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        tap = ResponseTap()
        extras = _StreamExtras(tap)
        chunks = super()._astream(messages, stop, None, **kwargs)
        try:
            while True:
                with tapping(tap):
                    generation = await anext(chunks, None)
                if generation is None:
                    break
                extras.apply(generation)
                await _aheard(run_manager, generation)
                yield generation
        finally:
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()
        if (rest := extras.rest()) is not None:
            await _aheard(run_manager, rest)
            yield rest

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        if self.openai_api_base and "openrouter.ai" in self.openai_api_base:
            params["ls_provider"] = "openrouter"
        return params


@functools.cache
def _default_clients() -> tuple[httpx.Client, httpx.AsyncClient]:
    # Shared by every model made without clients, as `langchain-openai` shares its own.
    return tapped_http_client(), tapped_async_http_client()


def _with_extras(result: ChatResult, tap: ResponseTap) -> ChatResult:
    for index, generation in enumerate(result.generations):
        metadata = generation.message.response_metadata
        if tap.cost is not None:
            metadata["cost"] = tap.cost
        if annotations := tap.annotations.get(index):
            metadata["annotations"] = annotations
    return result


class _StreamExtras:
    """Puts each extra on one chunk of the stream, as soon as the tap has read it."""

    def __init__(self, tap: ResponseTap) -> None:
        self.tap = tap
        self.named = False
        self.cost_sent = False
        self.annotations_sent = 0

    def apply(self, generation: ChatGenerationChunk) -> None:
        if not isinstance(generation.message, AIMessageChunk):
            return
        metadata = generation.message.response_metadata
        if self.named:
            # LangChain concatenates string metadata when chunks are added: name it once.
            metadata.pop("model_name", None)
            if generation.generation_info:
                generation.generation_info.pop("model_name", None)
        elif self.tap.model is not None:
            metadata["model_name"] = self.tap.model
            self.named = True
        metadata.update(self._unsent())

    def rest(self) -> ChatGenerationChunk | None:
        """A last, empty chunk for what came after the last chunk the stream gave."""
        unsent = self._unsent()
        if not unsent:
            return None
        return ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=unsent))

    def _unsent(self) -> dict[str, Any]:
        unsent: dict[str, Any] = {}
        if self.tap.cost is not None and not self.cost_sent:
            unsent["cost"] = self.tap.cost
            self.cost_sent = True
        found = self.tap.annotations.get(0, [])
        if len(found) > self.annotations_sent:
            unsent["annotations"] = found[self.annotations_sent :]
            self.annotations_sent = len(found)
        return unsent


def _heard(run_manager: CallbackManagerForLLMRun | None, generation: ChatGenerationChunk) -> None:
    if run_manager is not None:
        logprobs = (generation.generation_info or {}).get("logprobs")
        run_manager.on_llm_new_token(generation.text, chunk=generation, logprobs=logprobs)


async def _aheard(
    run_manager: AsyncCallbackManagerForLLMRun | None, generation: ChatGenerationChunk
) -> None:
    if run_manager is not None:
        logprobs = (generation.generation_info or {}).get("logprobs")
        await run_manager.on_llm_new_token(generation.text, chunk=generation, logprobs=logprobs)
