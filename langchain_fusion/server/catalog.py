"""The chat models behind the server: one `ChatFusion` per distinct configuration, built
once and reused, and plain chat models for requests without fusion.

Building a `ChatFusion` resolves its models and compiles its graph, so instances are kept
in a bounded LRU cache keyed by the deliberation (models and parameters) and by whose
upstream key pays. Every backend shares the server's connection pool: a caller's own key
(bring-your-own-key) is a copy of the server's backend with that key, and the OpenAI SDK
sends the key per request, so one pool serves every key.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from langchain_fusion.backends import (
    DEFAULT_TIMEOUT,
    OPENROUTER_BASE_URL,
    OpenAICompatibleBackend,
)
from langchain_fusion.chat_models import FUSION_ALIASES, ChatFusion
from langchain_fusion.server.routing import AliasDefaults, Deliberation

DEFAULT_CAPACITY = 64
"""Distinct configurations kept built; the least recently used beyond this are dropped."""


class ModelCatalog:
    """The aliases the server was started with, and every configuration asked since."""

    def __init__(
        self, models: Mapping[str, ChatFusion], *, capacity: int = DEFAULT_CAPACITY
    ) -> None:
        if not models:
            raise ValueError("the server needs at least one model")
        unknown = [alias for alias in models if alias not in FUSION_ALIASES]
        if unknown:
            raise ValueError(f"not fusion aliases: {', '.join(unknown)}")
        self.served = list(models)
        self.fallback = "openrouter/fusion" if "openrouter/fusion" in models else self.served[0]
        base = models[self.fallback]
        # The alias not given falls back on the other's settings (with its own preset).
        self.defaults = {
            alias: AliasDefaults.of(alias, models.get(alias, base)) for alias in FUSION_ALIASES
        }
        configured = base.backend
        self.backend = configured or OpenAICompatibleBackend(
            base_url=base.base_url or OPENROUTER_BASE_URL,
            api_key=base.api_key,
            timeout=base.timeout or DEFAULT_TIMEOUT,
            max_retries=base.max_retries,
        )
        self.capacity = capacity
        self._chats: OrderedDict[tuple[Any, ...], ChatFusion] = OrderedDict()
        self._plain: OrderedDict[tuple[str, str | None], BaseChatModel] = OrderedDict()
        self._backends: OrderedDict[str, OpenAICompatibleBackend] = OrderedDict()
        self._lock = threading.Lock()
        self._given = dict(models)

    def alias_defaults(self, alias: str | None) -> AliasDefaults:
        """The alias's defaults; the server tool and the plugin use `openrouter/fusion`'s."""
        return self.defaults[alias] if alias is not None else self.defaults[self.fallback]

    def upstream_key(self, override: SecretStr | None) -> str | None:
        """A short, non-reversible id of the key that pays (None: the server's)."""
        if override is None:
            return None
        return hashlib.sha256(override.get_secret_value().encode()).hexdigest()[:32]

    def backend_for(self, override: SecretStr | None) -> OpenAICompatibleBackend:
        """The server's backend, or a copy paying with the caller's key (same pool)."""
        ident = self.upstream_key(override)
        if ident is None or override is None:
            return self.backend
        with self._lock:
            backend = self._backends.get(ident)
            if backend is None:
                # model_copy shares the private client pool (a shallow copy of it).
                backend = self.backend.model_copy(update={"api_key": override})
                self._backends[ident] = backend
                _trim(self._backends, self.capacity)
            else:
                self._backends.move_to_end(ident)
            return backend

    def chat_for(self, deliberation: Deliberation, override: SecretStr | None = None) -> ChatFusion:
        """The `ChatFusion` for `deliberation`, built on first use."""
        key = (*deliberation.cache_key(), self.upstream_key(override))
        with self._lock:
            chat = self._chats.get(key)
            if chat is not None:
                self._chats.move_to_end(key)
                return chat
        chat = self._build(deliberation, self.backend_for(override))
        with self._lock:
            existing = self._chats.setdefault(key, chat)
            self._chats.move_to_end(key)
            _trim(self._chats, self.capacity)
        return existing

    def plain_model(self, model: str, override: SecretStr | None = None) -> BaseChatModel:
        """`model` on the backend, for a Responses request without fusion."""
        key = (model, self.upstream_key(override))
        with self._lock:
            chat = self._plain.get(key)
            if chat is not None:
                self._plain.move_to_end(key)
                return chat
        # Built outside the lock: `backend_for` takes it too (a plain lock is not
        # re-entrant, and holding it here once hung the whole server).
        built = self.backend_for(override).chat_model(model)
        with self._lock:
            chat = self._plain.setdefault(key, built)
            self._plain.move_to_end(key)
            _trim(self._plain, self.capacity)
        return chat

    def _build(self, deliberation: Deliberation, backend: OpenAICompatibleBackend) -> ChatFusion:
        defaults = deliberation.defaults
        # `cache_control` is one of `parameters`: the panel and the judge get it, on
        # OpenRouter (graph/setup.py).
        parameters = deliberation.parameters
        settings = dict(defaults.settings)
        if deliberation.cascade is not None:  # the request's extension wins
            settings["cascade"] = deliberation.cascade
        return defaults.cls(
            **settings,
            model=deliberation.router,
            parameters=parameters,
            # Explicit fields win over `parameters`: the models the policy checked are
            # the models that run.
            analysis_models=list(deliberation.panel),
            judge_model=deliberation.judge,
            outer_model=deliberation.outer,
            preset=parameters.preset,
            backend=backend,
        )

    def warm(self) -> None:
        """Build the served aliases' default configurations now: a bad configuration
        fails at start-up, and the first requests do not pay for the build."""
        from langchain_fusion.server.routing import FusionAsk, resolve

        for alias in self.served:
            # ChatFusion builds its models on first use: build them now.
            ask = FusionAsk(model=alias, alias=alias)
            _ = self.chat_for(resolve(ask, self.defaults[alias])).configuration

    async def aclose(self) -> None:
        """Release the pooled connections."""
        await self.backend.aclose()


def _trim(cache: OrderedDict[Any, Any], capacity: int) -> None:
    while len(cache) > capacity:
        cache.popitem(last=False)
