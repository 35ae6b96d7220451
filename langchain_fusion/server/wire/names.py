"""The concrete model behind each configured name, learned once and used in every byte.

The hosted API names the concrete model (`openai/gpt-5.1`) in every body, chunk and event,
never the alias that was asked for (`~openai/gpt-latest`), and keeps one name for a whole
stream. The gateway learns each name once, and keeps it for every later request: from the
upstream's model list, whose `~author/family-latest` rows name their target
(`alias_target.slug`, read before the request's first byte), else from the model's first
streamed chunk (or its end, for a call that does not stream).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk, LLMResult

from langchain_fusion.chat_models import FUSION_ALIASES

MAX_REMEMBERED = 4096
"""Names the gateway remembers (a bound: model names come from requests)."""
LIST_TTL_S = 300.0
"""Seconds the upstream's model list is trusted before it is read again (on a miss)."""

ModelList = Callable[[], Awaitable[list[dict[str, Any]]]]
"""Reads the upstream's `GET /models` rows (`{"id", "alias_target"?: {"slug"}}`)."""


class ModelDirectory:
    """Configured name → concrete name, shared by every request of one gateway."""

    def __init__(self, *, list_ttl_s: float = LIST_TTL_S) -> None:
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()
        self.list_ttl_s = list_ttl_s
        self._listed_at: float | None = None

    def get(self, configured: str) -> str | None:
        return self._names.get(configured)

    def learn(self, configured: str, concrete: str) -> None:
        if not concrete or concrete in FUSION_ALIASES or concrete.startswith("~"):
            return  # an upstream that echoes the alias taught us nothing
        with self._lock:
            if len(self._names) >= MAX_REMEMBERED and configured not in self._names:
                self._names.pop(next(iter(self._names)))
            self._names[configured] = concrete

    async def look_up(self, configured: Iterable[str], read_list: ModelList) -> None:
        """Learn the targets of the `~…-latest` aliases among `configured` that are not
        known yet from the upstream's model list, read at most once per `list_ttl_s` (a
        list that cannot be read teaches nothing: the names are then learned from the
        models' first chunks)."""
        missing = {n for n in configured if n.startswith("~") and self.get(n) is None}
        if not missing:
            return
        with self._lock:  # one read per period; a request meanwhile does not wait for it
            listed = self._listed_at
            if listed is not None and time.monotonic() - listed < self.list_ttl_s:
                return
            self._listed_at = time.monotonic()
        try:
            rows = await read_list()
        except Exception:  # the list is a shortcut: never a failure
            return
        for row in rows:
            target = row.get("alias_target") if isinstance(row, dict) else None
            if isinstance(target, dict) and isinstance(row.get("id"), str):
                slug = target.get("slug")
                if isinstance(slug, str):
                    self.learn(row["id"], slug)


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
        message = getattr(chunk, "message", None)
        metadata = getattr(message, "response_metadata", None) or {}
        info = (chunk.generation_info if chunk is not None else None) or {}
        self._learn(run_id, metadata.get("model_name") or info.get("model_name"))

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
