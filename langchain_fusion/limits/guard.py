"""The in-run guard: no call starts that could take a run over what it holds.

The worst case before a run (`worst_case.py`) counts what a later stage re-reads (a
panel answer in the judge's prompt, the fusion result in the outer model's) at its
writer's output limit. That is no bound for every tokenizer: an answer of T tokens can
be many bytes per token (a model whose tokens are long, a provider that counts
differently), and the reader pays per byte of it. So the re-read is counted again, from
what was written, at the one moment it is known: when the call that reads it starts.

`SpendGuard` is a LangChain callback on every call of a run. When a call starts it
counts the call's worst case from its actual prompt (the UTF-8 bytes of its messages,
tools and response format, which bound any byte-level BPE tokenizer's count) and its
output limit (times `n`, times the attempts a retry may bill); the call may start only
if what the run has spent (as reported), plus what its calls in flight can still bill,
plus this call, fits what the run holds. Otherwise it raises `BudgetSpent` before the
call goes out: that stage stops with `budget_exceeded` and nothing more is spent.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from langchain_fusion.limits.settings import ModelPrice
from langchain_fusion.limits.worst_case import message_tokens, payload_tokens

_PROMPT_PARAMS = ("tools", "functions", "response_format")
"""Invocation parameters a model reads as prompt (each counted as the worst case counts
it: the bytes of its JSON value)."""


class BudgetSpent(Exception):
    """The run's budget is spent, or the next call could overspend it: no new call starts."""


@dataclass
class _Held:
    tokens: int = 0
    usd: float = 0.0


@dataclass(eq=False)  # a callback handler is hashed by identity
class SpendGuard(BaseCallbackHandler):
    """Refuses, as it starts, any call of a run that could take the run over `tokens`
    (and `usd`, where every price is known); see the module's docstring."""

    tokens: int
    usd: float | None = None
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    default_output: int = 4_096
    """The output limit of a call that sets none (the worst case assumed it too)."""
    attempts: int = 1
    """Times one call may be billed (1 + its retries)."""
    _spent: _Held = field(default_factory=_Held)
    _flight: dict[UUID, _Held] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    raise_error = True
    """A refusal must stop the call, not be logged and ignored."""
    run_inline = True

    def __post_init__(self) -> None:
        super().__init__()

    def worst(self, messages: list[BaseMessage], params: Mapping[str, Any]) -> _Held:
        """One call's worst case from its actual prompt and output limit."""
        prompt = message_tokens(messages) + sum(
            payload_tokens(params.get(k)) for k in _PROMPT_PARAMS
        )
        limit = params.get("max_completion_tokens") or params.get("max_tokens")
        output = (limit if isinstance(limit, int) else self.default_output) * max(
            1, int(params.get("n") or 1)
        )
        price = self.prices.get(str(params.get("model") or params.get("model_name") or ""))
        usd = 0.0 if price is None else prompt * price.prompt + output * price.completion
        return _Held((prompt + output) * self.attempts, usd * self.attempts)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        if parent_run_id is None:
            return  # the run's own model: its calls are the ones below it
        params = kwargs.get("invocation_params") or {}
        call = self.worst(messages[0] if messages else [], params)
        priced = str(params.get("model") or params.get("model_name") or "") in self.prices
        with self._lock:
            tokens, usd = self._held()
            over_tokens = tokens + call.tokens > self.tokens
            over_usd = self.usd is not None and priced and usd + call.usd > self.usd
            if over_tokens or over_usd:
                raise BudgetSpent(
                    f"budget spent: this call could bill {call.tokens} tokens "
                    f"(${call.usd:.4f}) on top of {tokens} spent or in flight, over the "
                    f"{self.tokens} tokens"
                    + (f" (${self.usd:.4f})" if self.usd is not None else "")
                    + " this run holds; no new call started"
                )
            self._flight[run_id] = call

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            held = self._flight.pop(run_id, None)
            if held is None:
                return
            tokens, usd = _reported(response)
            # What was not reported stays counted at what it could have billed.
            self._spent.tokens += held.tokens if tokens is None else tokens
            self._spent.usd += held.usd if usd is None else usd

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:  # a failed call may have been billed: its worst case stays
            held = self._flight.pop(run_id, None)
            if held is not None:
                self._spent.tokens += held.tokens
                self._spent.usd += held.usd

    def _held(self) -> tuple[int, float]:
        tokens = self._spent.tokens + sum(h.tokens for h in self._flight.values())
        return tokens, self._spent.usd + sum(h.usd for h in self._flight.values())


def _reported(response: LLMResult) -> tuple[int | None, float | None]:
    """The tokens and USD the upstream reported for a call (None: not reported)."""
    messages = [
        g.message for gs in response.generations for g in gs if isinstance(g, ChatGeneration)
    ]
    usages = [getattr(m, "usage_metadata", None) for m in messages]
    costs = [m.response_metadata.get("cost") for m in messages]
    tokens = sum(int(u.get("total_tokens", 0)) for u in usages if u)
    usd = sum(float(c) for c in costs if isinstance(c, int | float))
    all_usage = bool(messages) and all(usages)
    all_cost = bool(messages) and all(isinstance(c, int | float) for c in costs)
    return (tokens if all_usage else None), (usd if all_cost else None)
