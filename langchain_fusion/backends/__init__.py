"""How model slugs become chat models (how the fusion parameters then reach each inner
call is the graph's: `graph/inner_call.py`).

The default backend is OpenRouter through `langchain-openai`: the key comes from
`OPENROUTER_API_KEY` and the endpoint from `OPENROUTER_BASE_URL`, so any OpenAI-compatible
server (vLLM, llama.cpp, Ollama, the scripted test server) works by setting one variable.
Ready LangChain chat models of any provider can stand in for any slug.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.utils import from_env, secret_from_env
from langchain_openai.chat_models.base import BaseChatOpenAI
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from langchain_fusion.backends.chat_model import ChatOpenAICompatible
from langchain_fusion.backends.tap import tapped_async_http_client, tapped_http_client

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
DEPTH_HEADER = "x-openrouter-fusion-depth"
"""Sent on every panel and judge call, so that deliberation stays one level deep."""
DEFAULT_TIMEOUT = 120.0
"""Seconds per inner call. The OpenAI client's own default (ten minutes) is too long."""
DEFAULT_MAX_RETRIES = 2

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "DEPTH_HEADER",
    "OPENROUTER_BASE_URL",
    "ChatOpenAICompatible",
    "ModelLike",
    "OpenAICompatibleBackend",
    "model_label",
    "resolve_model",
    "runs_hosted_tools",
    "runs_server_tools",
]


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
    runs_hosted_tools: bool | None = None
    """Whether the endpoint runs the hosted web tools (`openrouter:*`) itself. None: only
    openrouter.ai does. (Formerly `server_tools`, a word that elsewhere means the hosted
    tool specs a call asks for.)"""
    model_settings: dict[str, Any] = Field(default_factory=dict)
    """Extra `ChatOpenAI` fields for every model of this backend (e.g. `frequency_penalty`)."""

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, values: Any) -> Any:
        if isinstance(values, dict) and "server_tools" in values:
            _deprecated("OpenAICompatibleBackend(server_tools=...)", "runs_hosted_tools=...")
            values = {k: v for k, v in values.items() if k != "server_tools"} | {
                "runs_hosted_tools": values["server_tools"]
            }
        return values

    @property
    def hosts_tools(self) -> bool:
        """Whether this endpoint runs the hosted web tools (`openrouter:*`) itself:
        `runs_hosted_tools`, or when unset whether it is openrouter.ai."""
        if self.runs_hosted_tools is not None:
            return self.runs_hosted_tools
        return "openrouter.ai" in self.base_url

    @property
    def server_tools(self) -> bool | None:
        """Deprecated: `runs_hosted_tools`."""
        _deprecated("OpenAICompatibleBackend.server_tools", "runs_hosted_tools")
        return self.runs_hosted_tools

    @property
    def runs_server_tools(self) -> bool:
        """Deprecated: `hosts_tools`."""
        _deprecated("OpenAICompatibleBackend.runs_server_tools", "hosts_tools")
        return self.hosts_tools

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
                factory = tapped_http_client if kind == "sync" else tapped_async_http_client
                # The OpenAI SDK's own client settings (its pool limits, redirects), with the
                # backend's timeout applied per request by the SDK, on a transport that
                # reads OpenRouter's extra fields (`backends/tap.py`).
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


def runs_hosted_tools(model: BaseChatModel, backend: OpenAICompatibleBackend) -> bool:
    """Whether `model`'s endpoint runs the hosted web tools (`openrouter:*`) itself."""
    if not isinstance(model, BaseChatOpenAI):
        return False
    base = model.openai_api_base or ""
    if base.rstrip("/") == backend.base_url.rstrip("/"):
        return backend.hosts_tools
    return "openrouter.ai" in base


def runs_server_tools(model: BaseChatModel, backend: OpenAICompatibleBackend) -> bool:
    """Deprecated: `runs_hosted_tools`."""
    _deprecated("runs_server_tools(model, backend)", "runs_hosted_tools(model, backend)")
    return runs_hosted_tools(model, backend)


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"{old} is deprecated: use {new} (`server_tools` names the hosted tool specs a "
        "call asks for everywhere else)",
        DeprecationWarning,
        stacklevel=3,
    )


def model_label(model: BaseChatModel) -> str:
    """The name a model goes by in results and in the judge's prompt."""
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return model._llm_type
