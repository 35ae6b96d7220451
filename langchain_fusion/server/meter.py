"""What one request did, seen through LangChain's callbacks: every inner call's usage by
model (for the spend ledger, even when the run failed half-way), and every fusion call
the outer model made, with its id, prompt and result (for `reasoning_details` and the
Responses output items, which need a record of each call, a capped one included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from langchain_fusion.contract.result import FusionResult
from langchain_fusion.graph.prompts import FUSION_TOOL_NAME
from langchain_fusion.limits import ModelPrice
from langchain_fusion.server.ledger import Spend

OUTER_RUN = "outer"
"""The run name ChatFusion gives its outer model's calls."""


@dataclass
class FusionCall:
    """One fusion call of the outer model, or the one ChatFusion made when forced."""

    call_id: str
    prompt: str
    result: FusionResult | None = None
    ran: bool = False
    """A deliberation ran for it; a call the outer model made that never ran was capped
    (one fusion per turn)."""
    error: str | None = None
    """What the tool said instead of a result (a refusal before any call)."""

    def outcome(self) -> FusionResult:
        if self.result is not None:
            return self.result
        if self.ran and self.error:
            return FusionResult(status="error", failure_detail=self.error)
        if self.ran:  # cancelled before its result came back
            return FusionResult(status="error", failure_reason="cancelled")
        return FusionResult(
            status="error",
            failure_reason="fusion_invocation_capped",
            failure_detail="one fusion per turn: fusion has already run in this turn",
        )


@dataclass
class _ModelUsage:
    tokens: int = 0
    reported_cost: float = 0.0
    unreported: int = 0
    """Calls of this model with no reported cost."""
    input_tokens: int = 0
    output_tokens: int = 0


class RunRecorder(AsyncCallbackHandler):
    """Collects one request's usage and fusion calls (attach via `config["callbacks"]`)."""

    run_inline = True
    """Runs before other handlers: a streamed event can then rely on what it recorded."""

    def __init__(self, prices: Mapping[str, ModelPrice] | None = None) -> None:
        self.prices = dict(prices or {})
        self._models: dict[UUID, str] = {}
        self._names: dict[UUID, str] = {}
        self._tools: dict[UUID, str] = {}
        self.usage: dict[str, _ModelUsage] = {}
        self.calls: dict[str, FusionCall] = {}

    # --- chat model runs ----------------------------------------------------------------

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        if parent_run_id is None:
            return  # the request's own model: its usage is the sum of what is below it
        params = kwargs.get("invocation_params") or {}
        model = params.get("model") or params.get("model_name") or "unknown"
        self._models[run_id] = str(model)
        if kwargs.get("name"):
            self._names[run_id] = str(kwargs["name"])

    async def on_llm_end(
        self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        model = self._models.pop(run_id, None)
        name = self._names.pop(run_id, None)
        if model is None:
            return
        for generations in response.generations:
            for generation in generations:
                if isinstance(generation, ChatGeneration):
                    self._count(model, generation.message)
                    if name == OUTER_RUN:
                        self._outer_calls(generation.message)

    async def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        # An error answer bills nothing; a call cancelled mid-way has no end: it stays
        # in flight (see `spend`).
        self._models.pop(run_id, None)
        self._names.pop(run_id, None)

    @property
    def in_flight(self) -> int:
        """Calls started that neither ended nor failed: cancelled (the client left) while
        the upstream may have billed them."""
        return len(self._models)

    def _count(self, model: str, message: BaseMessage) -> None:
        usage = getattr(message, "usage_metadata", None) or {}
        entry = self.usage.setdefault(model, _ModelUsage())
        entry.input_tokens += int(usage.get("input_tokens", 0))
        entry.output_tokens += int(usage.get("output_tokens", 0))
        entry.tokens += int(usage.get("total_tokens", 0))
        cost = message.response_metadata.get("cost")
        if isinstance(cost, int | float):
            entry.reported_cost += float(cost)
        else:
            entry.unreported += 1

    def _outer_calls(self, message: BaseMessage) -> None:
        if not isinstance(message, AIMessage):
            return
        for call in message.tool_calls:
            if call["name"] == FUSION_TOOL_NAME and call["id"]:
                prompt = call["args"].get("prompt", "")
                self.calls.setdefault(call["id"], FusionCall(call["id"], str(prompt)))

    # --- the fusion tool's runs ---------------------------------------------------------

    async def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if serialized.get("name") != FUSION_TOOL_NAME:
            return
        call_id = str(kwargs.get("tool_call_id") or f"call_fusion_{len(self.calls)}")
        prompt = str((inputs or {}).get("prompt", ""))
        call = self.calls.setdefault(call_id, FusionCall(call_id, prompt))
        call.ran = True
        self._tools[run_id] = call_id

    async def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        call_id = self._tools.get(run_id)  # kept: a streamed event may still ask for it
        if call_id is None:
            return
        artifact = getattr(output, "artifact", None)
        if isinstance(artifact, FusionResult):
            self.calls[call_id].result = artifact
        else:
            self.calls[call_id].error = str(getattr(output, "content", output))

    # --- what it adds up to -------------------------------------------------------------

    def call_of_run(self, run_id: UUID | str) -> FusionCall | None:
        """The fusion call a running fusion tool run serves."""
        call_id = self._tools.get(run_id if isinstance(run_id, UUID) else UUID(str(run_id)))
        return self.calls.get(call_id) if call_id is not None else None

    def fusion_calls(self) -> list[FusionCall]:
        """Every fusion call, in the order they were made."""
        return list(self.calls.values())

    def spend(self) -> Spend:
        """Tokens of every inner call; USD where every call has a reported cost or a price.
        Not `complete` while a call is in flight (cancelled: what it billed is unknown):
        the ledger then settles the worst case reserved, so a cap holds for a client that
        left too."""
        tokens = sum(entry.tokens for entry in self.usage.values())
        usd: float | None = 0.0
        for model, entry in self.usage.items():
            price = self.prices.get(model)
            if entry.unreported == 0:
                usd = None if usd is None else usd + entry.reported_cost
            elif price is not None:
                priced = entry.input_tokens * price.prompt + entry.output_tokens * price.completion
                usd = None if usd is None else usd + priced
            else:
                usd = None
        return Spend(tokens=tokens, usd=usd, complete=not self.in_flight)


def message_spend(message: BaseMessage, model: str, prices: Mapping[str, ModelPrice]) -> Spend:
    """One plain call's spend, from its usage."""
    recorder = RunRecorder(prices)
    recorder._count(model, message)
    return recorder.spend()


@dataclass
class Usage:
    """Usage as the wire formats want it, from a message's `usage_metadata`."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, message: BaseMessage | None, cost: float | None = None) -> Usage:
        usage = getattr(message, "usage_metadata", None) or {}
        return cls(
            input_tokens=int(usage.get("input_tokens", 0)),
            output_tokens=int(usage.get("output_tokens", 0)),
            total_tokens=int(usage.get("total_tokens", 0)),
            cached_tokens=int((usage.get("input_token_details") or {}).get("cache_read") or 0),
            reasoning_tokens=int((usage.get("output_token_details") or {}).get("reasoning") or 0),
            cost=cost,
        )

    def chat(self) -> dict[str, Any]:
        """Chat Completions' `usage` (OpenRouter adds `cost`)."""
        body: dict[str, Any] = {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens:
            body["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens:
            body["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        if self.cost is not None:
            body["cost"] = round(self.cost, 10)
        return body

    def responses(self) -> dict[str, Any]:
        """The Responses API's `usage`."""
        body: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.total_tokens,
        }
        if self.cost is not None:
            body["cost"] = round(self.cost, 10)
        return body
