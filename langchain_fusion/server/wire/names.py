"""The concrete model behind each configured name, learned once and used in every byte.

The hosted API names the concrete model (`openai/gpt-5.1`) in every body, chunk and event,
never the alias that was asked for (`~openai/gpt-latest`), and keeps one name for a whole
stream. A request learns each model's concrete name from the first upstream response that
reports it (its first streamed token, or its end); the gateway keeps what it learned so
that the next request can name the model before any upstream byte.
"""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk, LLMResult

from langchain_fusion.chat_models import FUSION_ALIASES

MAX_REMEMBERED = 4096
"""Names the gateway remembers (a bound: model names come from requests)."""


class ModelDirectory:
    """Configured name → concrete name, shared by every request of one gateway."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, configured: str) -> str | None:
        return self._names.get(configured)

    def learn(self, configured: str, concrete: str) -> None:
        if not concrete or concrete in FUSION_ALIASES or concrete.startswith("~"):
            return  # an upstream that echoes the alias taught us nothing
        with self._lock:
            if len(self._names) >= MAX_REMEMBERED and configured not in self._names:
                self._names.pop(next(iter(self._names)))
            self._names[configured] = concrete


class ConcreteNames(AsyncCallbackHandler):
    """One request's view of the directory: learns from its own runs as they report
    (attach via `config["callbacks"]`), and fixes each name once it has named it."""

    run_inline = True
    """Runs before the stream hands the chunk on, so the name is known when it is needed."""

    def __init__(self, directory: ModelDirectory) -> None:
        self.directory = directory
        self._runs: dict[UUID, str] = {}
        self._fixed: dict[str, str] = {}

    def concrete(self, configured: str) -> str | None:
        """The concrete name of `configured`, fixed for this request from its first use."""
        if configured in self._fixed:
            return self._fixed[configured]
        found = self.directory.get(configured)
        if found is not None:
            self._fixed[configured] = found
        return found

    def name(self, configured: str) -> str:
        """The concrete name if known, else `configured` (then fixed for the request)."""
        found = self.concrete(configured)
        if found is None:
            self._fixed[configured] = configured
            return configured
        return found

    async def on_chat_model_start(
        self, serialized: dict[str, Any], messages: Any, *, run_id: UUID, **kwargs: Any
    ) -> None:
        params = kwargs.get("invocation_params") or {}
        model = params.get("model") or params.get("model_name")
        if isinstance(model, str):
            self._runs[run_id] = model

    async def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        info = chunk.generation_info if chunk is not None else None
        self._learn(run_id, (info or {}).get("model_name"))

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                metadata = getattr(message, "response_metadata", None) or {}
                self._learn(run_id, metadata.get("model_name"))
        self._runs.pop(run_id, None)

    def _learn(self, run_id: UUID, concrete: Any) -> None:
        configured = self._runs.get(run_id)
        if configured is not None and isinstance(concrete, str):
            self.directory.learn(configured, concrete)
