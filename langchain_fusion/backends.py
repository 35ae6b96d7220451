"""How model slugs become chat models (how the fusion parameters then reach each inner
call is the graph's: `graph/inner_call.py`).

The default backend is OpenRouter through `langchain-openai`: the key comes from
`OPENROUTER_API_KEY` and the endpoint from `OPENROUTER_BASE_URL`, so any OpenAI-compatible
server (vLLM, llama.cpp, Ollama, the scripted test server) works by setting one variable.
Ready LangChain chat models of any provider can stand in for any slug.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.utils import from_env, secret_from_env
from langchain_openai import ChatOpenAI
from langchain_openai.chat_models.base import BaseChatOpenAI
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
DEPTH_HEADER = "x-openrouter-fusion-depth"
"""Sent on every panel and judge call, so that deliberation stays one level deep."""
DEFAULT_TIMEOUT = 120.0
"""Seconds per inner call. The OpenAI client's own default (ten minutes) is too long."""
DEFAULT_MAX_RETRIES = 2


class ChatOpenAICompatible(ChatOpenAI):
    """`ChatOpenAI` that also surfaces what OpenRouter adds to a chat completion.

    The cost (`usage.cost`, USD) lands in `response_metadata["cost"]`, and the pages its
    server-side web tools read (`message.annotations` of type `url_citation`) in
    `response_metadata["annotations"]`, for `invoke` and `stream` alike. A stream's first
    chunk names the concrete model that answers (`response_metadata["model_name"]`, the
    upstream's `model`), not only its last, so a consumer can name it from the first byte.
    """

    def _create_chat_result(
        self, response: Any, generation_info: dict[str, Any] | None = None
    ) -> ChatResult:
        result = super()._create_chat_result(response, generation_info)
        usage = (
            response.get("usage")
            if isinstance(response, dict)
            else getattr(response, "usage", None)
        )
        cost = _cost_of(usage)
        choices = response.get("choices") if isinstance(response, dict) else None
        if choices is None:
            choices = [c.model_dump() for c in getattr(response, "choices", None) or []]
        for generation, choice in zip(result.generations, choices, strict=False):
            if cost is not None:
                generation.message.response_metadata["cost"] = cost
            if annotations := (choice.get("message") or {}).get("annotations"):
                generation.message.response_metadata["annotations"] = annotations
        return result

    def _convert_chunk_to_generation_chunk(
        self,
        chunk: dict[str, Any],
        default_chunk_class: type,
        base_generation_info: dict[str, Any] | None,
    ) -> ChatGenerationChunk | None:
        generation = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info
        )
        if generation is None or not isinstance(generation.message, AIMessageChunk):
            return generation
        metadata = generation.message.response_metadata
        if isinstance(model := chunk.get("model"), str) and model:
            metadata["model_name"] = model  # from the first chunk, not only the last
        cost = _cost_of(chunk.get("usage"))
        if cost is not None:
            metadata["cost"] = cost
        for choice in chunk.get("choices") or []:
            if annotations := (choice.get("delta") or {}).get("annotations"):
                metadata["annotations"] = annotations
        return generation

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        named = False
        for generation in super()._stream(*args, **kwargs):
            named = _named_once(generation, named)
            yield generation

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        named = False
        async for generation in super()._astream(*args, **kwargs):
            named = _named_once(generation, named)
            yield generation

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        if self.openai_api_base and "openrouter.ai" in self.openai_api_base:
            params["ls_provider"] = "openrouter"
        return params


def _named_once(generation: ChatGenerationChunk, named: bool) -> bool:
    """Keep `model_name` on the first chunk that reports it and drop it from the rest:
    LangChain concatenates string metadata when chunks are added, so a name on every
    chunk would read `m1m1m1` in the whole message. Returns whether a chunk named it."""
    metadata = generation.message.response_metadata
    if not named:
        return "model_name" in metadata
    metadata.pop("model_name", None)
    if generation.generation_info:
        generation.generation_info.pop("model_name", None)
    return True


def _cost_of(usage: Any) -> float | None:
    if usage is None:
        return None
    if not isinstance(usage, dict):
        usage = getattr(usage, "model_extra", None) or {}
    cost = usage.get("cost")
    return float(cost) if isinstance(cost, (int, float)) else None


class OpenAICompatibleBackend(BaseModel):
    """Turns model slugs into chat models on one OpenAI-compatible endpoint.

    All models of a backend share one connection pool (one sync and one async HTTP client,
    made on first use); `close()` / `aclose()` release its connections.
    """

    model_config = ConfigDict(frozen=True)
    _clients: dict[str, Any] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    base_url: str = Field(
        default_factory=from_env("OPENROUTER_BASE_URL", default=OPENROUTER_BASE_URL)
    )
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env("OPENROUTER_API_KEY", default=None)
    )
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    seed_per_panelist: bool = False
    """Give panel entry *i* the seed *i*: a panel of one local model repeated then gives
    different, repeatable answers."""
    server_tools: bool | None = None
    """Whether the endpoint runs `openrouter:*` tools itself. None: only openrouter.ai."""
    model_settings: dict[str, Any] = Field(default_factory=dict)
    """Extra `ChatOpenAI` fields for every model of this backend (e.g. `frequency_penalty`)."""

    @property
    def runs_server_tools(self) -> bool:
        """Whether this endpoint runs the hosted web tools (`openrouter:*`) itself."""
        if self.server_tools is not None:
            return self.server_tools
        return "openrouter.ai" in self.base_url

    def chat_model(self, slug: str, *, panel_index: int | None = None) -> BaseChatModel:
        """The chat model for `slug` on this backend."""
        return ChatOpenAICompatible(
            model=slug,
            http_client=self._client("sync"),
            http_async_client=self._client("async"),
            base_url=self.base_url,
            # Without a key the request still goes out; the server answers 401 itself.
            api_key=self.api_key or SecretStr("not-set"),
            timeout=self.timeout,
            max_retries=self.max_retries,
            stream_usage=True,
            seed=panel_index if self.seed_per_panelist else None,
            **self.model_settings,
        )

    def _client(self, kind: str) -> Any:
        with self._lock:
            if kind not in self._clients:
                factory = (
                    openai.DefaultHttpxClient if kind == "sync" else openai.DefaultAsyncHttpxClient
                )
                # The OpenAI SDK's own client settings (its pool limits, redirects), with the
                # backend's timeout applied per request by the SDK.
                self._clients[kind] = factory()
            return self._clients[kind]

    def close(self) -> None:
        """Close the sync client's connections (async ones: `aclose`)."""
        with self._lock:
            client = self._clients.pop("sync", None)
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close both clients' connections."""
        self.close()
        with self._lock:
            client = self._clients.pop("async", None)
        if client is not None:
            await client.aclose()


ModelLike = str | BaseChatModel


def resolve_model(
    model: ModelLike, backend: OpenAICompatibleBackend, *, panel_index: int | None = None
) -> BaseChatModel:
    """A slug becomes a chat model on `backend`; a chat model is used as it is."""
    if isinstance(model, BaseChatModel):
        return model
    return backend.chat_model(model, panel_index=panel_index)


def runs_server_tools(model: BaseChatModel, backend: OpenAICompatibleBackend) -> bool:
    """Whether `model`'s endpoint runs the hosted web tools (`openrouter:*`) itself."""
    if not isinstance(model, BaseChatOpenAI):
        return False
    base = model.openai_api_base or ""
    if base.rstrip("/") == backend.base_url.rstrip("/"):
        return backend.runs_server_tools
    return "openrouter.ai" in base


def model_label(model: BaseChatModel) -> str:
    """The name a model goes by in results and in the judge's prompt."""
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return model._llm_type
