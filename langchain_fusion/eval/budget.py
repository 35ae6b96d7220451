"""What a run may cost: prices per model, the worst case of what remains to run, and the
check that refuses a run whose worst case exceeds `max_cost` before any model is called."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from langchain_fusion import FusionParameters, OpenAICompatibleBackend
from langchain_fusion.eval import _pipeline
from langchain_fusion.eval.arms import JUDGED_KINDS, ArmSpec
from langchain_fusion.eval.items import EvalItem

GRADER_PROMPT_TOKENS = 400
"""The LLM grader's instructions, for the estimate."""
_SEAT = re.compile(r"#\d+$")


class BudgetError(ValueError):
    """The run could cost more than `max_cost`, or its cost cannot be bounded."""


Price = tuple[float, float]


def base_model(label: str) -> str:
    """`m#2` (a repeated seat's label) → `m`."""
    return _SEAT.sub("", label)


def cost_of(
    by_model: Mapping[str, Any], prices: Mapping[str, Price]
) -> tuple[float | None, str | None]:
    """(USD, source) of calls by model: the backend's reported cost where there is one,
    else tokens × price; (None, None) when a model has neither."""
    total = 0.0
    sources = set()
    for model, usage in by_model.items():
        cost = usage.cost
        if cost is not None:
            total += cost
            sources.add("reported")
            continue
        price = prices.get(model) or prices.get(base_model(model))
        if price is None:
            if usage.total_tokens == 0:
                continue  # a call that never happened costs nothing
            return None, None
        total += usage.input_tokens * price[0] + usage.output_tokens * price[1]
        sources.add("prices")
    return total, "+".join(sorted(sources)) or "reported"


def parse_prices(prices: Mapping[str, Mapping[str, float]] | None) -> dict[str, Price]:
    """`{"model": {"prompt": usd_per_token, "completion": usd_per_token}}` → tuples."""
    parsed = {}
    for model, price in (prices or {}).items():
        try:
            parsed[model] = _pipeline.price_of(price)
        except Exception as error:
            raise BudgetError(
                f"price of {model}: {error}; give {{'prompt': USD/token, 'completion': USD/token}}"
            ) from None
    return parsed


def fetch_prices(backend: OpenAICompatibleBackend, models: Iterable[str]) -> dict[str, Price]:
    """Prices from the backend's model list (OpenRouter's `GET /models` has `pricing`);
    models it does not price are left out."""
    wanted = set(models)
    headers = {}
    if backend.api_key is not None:
        headers["Authorization"] = f"Bearer {backend.api_key.get_secret_value()}"
    try:
        response = httpx.get(f"{backend.base_url.rstrip('/')}/models", headers=headers, timeout=30)
        response.raise_for_status()
        data = response.json().get("data") or []
    except (httpx.HTTPError, ValueError, AttributeError):
        return {}
    found = {}
    for entry in data:
        pricing = entry.get("pricing") if isinstance(entry, dict) else None
        if entry.get("id") in wanted and isinstance(pricing, dict):
            try:
                found[entry["id"]] = (float(pricing["prompt"]), float(pricing["completion"]))
            except (KeyError, TypeError, ValueError):
                continue
    return found


@dataclass(frozen=True)
class Estimate:
    """The worst case of the remaining work."""

    calls: int
    input_tokens: int
    output_tokens: int
    cost: float | None

    def describe(self) -> str:
        cost = "unknown cost" if self.cost is None else f"${self.cost:.4f}"
        return (
            f"{cost} ({self.calls} calls, {self.input_tokens} input + {self.output_tokens} "
            "output tokens)"
        )


def estimate_run(
    work: Sequence[tuple[EvalItem, ArmSpec]],
    *,
    messages_for: Any,
    parameters: FusionParameters,
    prices: Mapping[str, Price],
    grader_model: str | None,
) -> Estimate:
    """The most the pending (item, arm) pairs can spend, grading included."""
    out = parameters.max_completion_tokens
    if out is None:
        raise BudgetError(
            "--max-cost needs --max-completion-tokens, so that the worst case of every call "
            "can be bounded before any model is called"
        )
    steps = parameters.max_tool_calls if parameters.effective_tools else 0
    price_table = {m: {"prompt": p[0], "completion": p[1]} for m, p in prices.items()}
    calls = inputs = outputs = 0
    cost: float | None = 0.0
    for item, arm in work:
        prompt = _pipeline.prompt_tokens(messages_for(item))
        cases = [
            _pipeline.worst_case(
                prompt=prompt,
                panel=arm.panel,
                judge=arm.judge if arm.kind in JUDGED_KINDS else None,
                synthesizer=arm.judge if arm.kind in JUDGED_KINDS else None,
                max_completion_tokens=out,
                tool_steps=steps,
                prices=price_table,
                judge_stages=_pipeline.cascade_judge_stages(
                    dict(arm.cascade) if arm.cascade else None
                ),
            )
        ]
        if grader_model is not None:
            reference = math.ceil(len(str(item.reference)) / 4)
            cases.append(
                _pipeline.worst_case(
                    prompt=prompt + out + reference + GRADER_PROMPT_TOKENS,
                    panel=[grader_model],
                    judge=None,
                    synthesizer=None,
                    max_completion_tokens=out,
                    tool_steps=0,
                    prices=price_table,
                )
            )
        for case in cases:
            calls += case.calls
            inputs += case.input_tokens
            outputs += case.output_tokens
            cost = None if cost is None or case.cost is None else cost + case.cost
    return Estimate(calls, inputs, outputs, cost)


def check_max_cost(max_cost: float, estimate: Estimate, unpriced: Sequence[str]) -> None:
    """Refuse a run whose worst case could exceed `max_cost` (the estimate in the message)."""
    if estimate.cost is None or unpriced:
        raise BudgetError(
            f"--max-cost needs a price for every model; none for {', '.join(unpriced)} "
            "(give --prices FILE.json, or use a backend that lists prices); worst case "
            f"without prices: {estimate.describe()}"
        )
    if estimate.cost > max_cost:
        raise BudgetError(
            f"this run could spend up to {estimate.describe()}, over --max-cost "
            f"${max_cost:g}; lower --max-completion-tokens, --max-tool-calls (or --no-tools), "
            "--limit or the arms, or raise --max-cost"
        )
