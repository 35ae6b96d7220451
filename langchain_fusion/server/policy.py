"""The operator's policy, checked before any upstream call: which models may run, how large
a panel may be, and what one request may cost at worst.

The worst case is the one of `langchain_fusion.limits` (the graph's budget guard and the
eval harness use it too): every input part as UTF-8 bytes, every panelist using every
tool step, the judge and its retry (and the fallback judge), every outer call a request
may make (`MAX_OUTER_CALLS`), each writing its whole output limit, `n` choices, each call
once per attempt (1 + the configured retries). An outer model
with no output limit in the request or the configuration is counted at the hosted default
per call (16 000 tokens): set `max_tokens` to be admitted under a tight cap.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage

from langchain_fusion.backends import DEFAULT_MAX_RETRIES
from langchain_fusion.chat_models import FUSION_ALIASES
from langchain_fusion.chat_models.tool_loop import MAX_OUTER_CALLS
from langchain_fusion.contract.cascade import check_cascade
from langchain_fusion.contract.parameters import (
    DEFAULT_MAX_COMPLETION_TOKENS,
    SERVER_TOOL_TYPE,
    FusionParameterError,
    ToolSpec,
)
from langchain_fusion.contract.presets import PRESETS
from langchain_fusion.graph.budget import (
    JUDGE_INSTRUCTION_TOKENS,
    BudgetEstimate,
    BudgetExceededError,
    check_budget,
    estimate_budget,
)
from langchain_fusion.limits import FusionLimits, ModelPrice, SpendGuard
from langchain_fusion.limits.worst_case import (
    call_worst_case,
    message_tokens,
    outer_worst_case,
    payload_tokens,
    reread_tokens,
    tools_tokens,
    total,
)
from langchain_fusion.server.errors import GatewayError
from langchain_fusion.server.ledger import Spend
from langchain_fusion.server.routing import Deliberation, label

FUSION_ALIAS_PREFIX = "openrouter/fusion"
"""The aliases' common prefix: never a model name upstream."""
ASSUMED_OUTPUT_TOKENS = DEFAULT_MAX_COMPLETION_TOKENS
"""Output tokens counted for a call whose limit nobody set."""


def load_prices(path: str | Path) -> dict[str, ModelPrice]:
    """Per-token USD prices: `{"model": {"prompt": 3e-06, "completion": 1.5e-05}, ...}`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the prices file {path}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object mapping model slugs to prices")
    try:
        return {str(model): ModelPrice.model_validate(price) for model, price in data.items()}
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


@dataclass(frozen=True)
class Policy:
    """What this server lets a request do. Every field is optional: unset, no limit."""

    allow_models: tuple[str, ...] = ()
    """Glob patterns (`fnmatch`, e.g. `openai/*`, `~anthropic/*`); empty allows any."""
    max_panel: int | None = None
    max_request_tokens: int | None = None
    """Worst-case tokens (every inner call, in and out) one request may spend."""
    max_request_cost: float | None = None
    """Worst-case USD one request may spend; needs a price for every model."""
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    extensions: bool = True
    """Our extensions of the contract (`parameters.cascade`); False refuses them (400)."""

    def __post_init__(self) -> None:
        for name in ("max_panel", "max_request_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_request_cost is not None and self.max_request_cost <= 0:
            raise ValueError("max_request_cost must be positive")

    # --- models ----------------------------------------------------------------------

    def allows(self, model: str) -> bool:
        return not self.allow_models or any(
            fnmatch.fnmatchcase(model, pattern) for pattern in self.allow_models
        )

    def check_models(self, models: Iterable[str], *, why: str = "") -> None:
        """403 naming the first model the allow-list does not cover (400 for a fusion
        alias: it is never sent upstream as a model, whatever a glob allows)."""
        for model in models:
            if model in FUSION_ALIASES or model.startswith(FUSION_ALIAS_PREFIX):
                raise GatewayError(
                    400,
                    f"{model!r}{why} is a fusion alias, not a model: it cannot be called as "
                    "a panelist, judge, outer or fallback model (fusion does not nest)",
                    metadata={"model": model},
                )
            if not self.allows(model):
                raise GatewayError(
                    403,
                    f"the model {model!r}{why} is not allowed on this server "
                    f"(allowed: {', '.join(self.allow_models)})",
                    metadata={"model": model, "allowed": list(self.allow_models)},
                )

    def check_deliberation(self, deliberation: Deliberation) -> None:
        """Allow-list over every model that may run (outer, panel, judge, fallback judge:
        a preset's panel and judge as it expands), then the panel size."""
        preset = deliberation.parameters.preset
        expansion = PRESETS.get(preset)
        expanded = {*expansion.analysis_models, expansion.model} if expansion else set()
        for model in deliberation.models():
            self.check_models(
                [model], why=f" (from preset {preset!r})" if model in expanded else ""
            )
        self.check_nested(deliberation.parameters.effective_tools, "parameters.tools")
        if deliberation.cascade is not None and not self.extensions:
            raise GatewayError(
                400,
                "parameters.cascade is an extension of this gateway, not part of the hosted "
                "contract, and this server turns extensions off (--no-extensions); send the "
                "request without it",
                metadata={"param": "parameters.cascade"},
            )
        if deliberation.cascade is not None:
            try:
                check_cascade(deliberation.cascade, len(deliberation.panel))
            except FusionParameterError as error:
                raise GatewayError(
                    400,
                    "parameters." + "; ".join(error.problems),
                    metadata={"param": "parameters.cascade"},
                ) from None
        size = len(deliberation.panel)
        if self.max_panel is not None and size > self.max_panel:
            raise GatewayError(
                403,
                f"a panel of {size} models is over this server's limit of {self.max_panel}",
                metadata={"panel_size": size, "max_panel": self.max_panel},
            )

    def check_nested(self, tools: Iterable[ToolSpec], where: str) -> None:
        """The same rules for every model a nested tool can make the gateway call: no
        fusion inside fusion (its own panel would escape the allow-list and the depth
        limit), and every model a tool's parameters name allowed."""
        for index, tool in enumerate(tools):
            if tool.type == SERVER_TOOL_TYPE:
                raise GatewayError(
                    400,
                    f"{where}[{index}]: {SERVER_TOOL_TYPE} cannot be nested in fusion's own "
                    "tools (fusion does not nest)",
                    metadata={"param": f"{where}[{index}]"},
                )
            for model in _named_models(tool.parameters or {}):
                self.check_models([model], why=f" (from {where}[{index}] {tool.type})")

    # --- the worst case --------------------------------------------------------------

    def fusion_worst_case(
        self,
        deliberation: Deliberation,
        messages: Sequence[BaseMessage],
        *,
        tools: Sequence[Mapping[str, Any]] = (),
        outer_max_tokens: int | None,
        enabled: bool = True,
    ) -> BudgetEstimate:
        """The most one request can spend (`limits.worst_case`): the deliberation (unless
        it cannot run in this request), then every outer call at its output limit, each
        call as many times as it may be retried."""
        prompt = message_tokens(messages) + tools_tokens(tools)
        params = deliberation.parameters
        outer = label(deliberation.outer)
        outer_out = outer_max_tokens or ASSUMED_OUTPUT_TOKENS
        attempts = 1 + _retries(deliberation)
        prices = dict(self.prices)
        parts: list[BudgetEstimate] = []
        fusion_prompt = prompt
        if enabled:
            steps = params.max_tool_calls if params.effective_tools else 0
            judges = [label(deliberation.judge)]
            if deliberation.fallback_judge is not None:
                judges.append(label(deliberation.fallback_judge))
            parts.append(
                estimate_budget(
                    prompt_tokens=prompt,
                    panel=[label(model) for model in deliberation.panel],
                    judge=judges[0],
                    judges=judges,
                    synthesizer=None,
                    max_completion_tokens=params.max_completion_tokens,
                    tool_steps=steps,
                    judge_tool_steps=steps,
                    prices=prices,
                    judge_attempts=2 * len(judges) * _judge_stages(deliberation),
                    attempts=attempts,
                )
            )
            # What the outer model reads back: the analysis and every answer.
            fusion_prompt += (
                JUDGE_INSTRUCTION_TOKENS
                + params.max_completion_tokens
                + reread_tokens(len(deliberation.panel), params.max_completion_tokens)
            )
        calls = MAX_OUTER_CALLS if enabled else 1
        parts.append(
            outer_worst_case(
                outer, fusion_prompt, outer_out, prices, calls=calls, attempts=attempts
            )
        )
        return total(parts)

    def guard(self, deliberation: Deliberation, worst: BudgetEstimate) -> SpendGuard:
        """The in-run guard of a fusion run that holds `worst` (`limits/guard.py`): each
        call is counted again from its actual prompt as it starts, so that what a stage
        re-reads cannot take the run over what it reserved."""
        return SpendGuard(
            tokens=worst.total_tokens,
            usd=worst.cost,
            prices=dict(self.prices),
            default_output=ASSUMED_OUTPUT_TOKENS,
            attempts=1 + _retries(deliberation),
        )

    def call_worst_case(
        self, model: str, prompt_tokens: int, output_tokens: int, *, n: int = 1, attempts: int = 1
    ) -> BudgetEstimate:
        """One call (`n` choices, `attempts` tries) at its output limit."""
        return call_worst_case(
            model, prompt_tokens, output_tokens, self.prices, n=n, attempts=attempts
        )

    def check_budget(self, estimate: BudgetEstimate) -> None:
        """402 with the estimate when the worst case is over the per-request cap."""
        if self.max_request_tokens is None and self.max_request_cost is None:
            return  # (either alone is enforced: FusionLimits takes them one by one)
        limits = FusionLimits(
            max_total_tokens=self.max_request_tokens, max_cost=self.max_request_cost
        )
        try:
            check_budget(limits, estimate)
        except BudgetExceededError as error:
            raise GatewayError(
                402,
                f"refused by this server's per-request limit: {error}".replace(
                    "max_total_tokens", "--max-request-tokens"
                ).replace("max_cost", "--max-request-cost"),
                metadata={
                    "estimate": estimate_json(estimate),
                    "limit": {
                        "max_request_tokens": self.max_request_tokens,
                        "max_request_cost": self.max_request_cost,
                    },
                },
            ) from None


def _judge_stages(deliberation: Deliberation) -> int:
    """A cascade may ask the judge twice: about the first seats, then about every answer."""
    cascade = deliberation.cascade or deliberation.defaults.settings.get("cascade")
    return 2 if cascade is not None and cascade.asks_judge_first else 1


def estimate_json(estimate: BudgetEstimate) -> dict[str, Any]:
    return {
        "calls": estimate.calls,
        "input_tokens": estimate.input_tokens,
        "output_tokens": estimate.output_tokens,
        "total_tokens": estimate.total_tokens,
        "cost": estimate.cost,
    }


def as_spend(estimate: BudgetEstimate) -> Spend:
    return Spend(tokens=estimate.total_tokens, usd=estimate.cost)


_MODEL_KEYS = ("model", "models", "analysis_models", "judge_model", "outer_model")


def _named_models(parameters: Mapping[str, Any]) -> list[str]:
    """Every model a tool's parameters name, at any depth."""
    found: list[str] = []
    stack: list[Any] = [parameters]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in _MODEL_KEYS and isinstance(value, str):
                    found.append(value)
                elif key in _MODEL_KEYS and isinstance(value, list):
                    found += [v for v in value if isinstance(v, str)]
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found


def plain_prompt_tokens(body: Mapping[str, Any]) -> int:
    """A plain request's prompt at most: every message and part, its tools and response
    format, as UTF-8 bytes (`limits.worst_case`)."""
    messages = body.get("messages")
    prompt = (
        message_tokens(m for m in messages if isinstance(m, Mapping))
        if isinstance(messages, list)
        else payload_tokens(body.get("input"))
    )
    tools = body.get("tools")
    extra = payload_tokens(body.get("response_format")) + payload_tokens(body.get("functions"))
    return prompt + (tools_tokens(tools) if isinstance(tools, list) else 0) + extra


def _retries(deliberation: Deliberation) -> int:
    retries = deliberation.defaults.settings.get("max_retries", DEFAULT_MAX_RETRIES)
    return retries if isinstance(retries, int) and retries > 0 else 0
