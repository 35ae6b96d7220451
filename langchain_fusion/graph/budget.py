"""The budget guard's worst case: what a run could spend, estimated before any call.

During the run, `RunClock` (graph/context.py) keeps the ledger and stops new calls once
the budget is spent; this module refuses, up front, a run that could go over it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import BaseMessage

from langchain_fusion.contract.errors import DeliberationRefused
from langchain_fusion.limits import FusionLimits, ModelPrice

TOOL_RESULT_TOKENS = 5_000
"""What one tool step may add to a prompt (20 000 characters of page)."""
JUDGE_INSTRUCTION_TOKENS = 600


class BudgetExceededError(DeliberationRefused):
    """The run could exceed its budget; raised before any model is called."""


@dataclass(frozen=True)
class BudgetEstimate:
    """The worst case of one deliberation."""

    calls: int
    input_tokens: int
    output_tokens: int
    cost: float | None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def describe(self) -> str:
        cost = f", ${self.cost:.4f}" if self.cost is not None else ""
        return (
            f"up to {self.calls} calls, {self.input_tokens} input + {self.output_tokens} output "
            f"= {self.total_tokens} tokens{cost}"
        )


def approximate_tokens(messages: Sequence[BaseMessage]) -> int:
    """A tokenizer-free upper-ish estimate: four characters a token, plus framing."""
    return sum(math.ceil(len(message.text) / 4) + 4 for message in messages)


def estimate_budget(
    *,
    prompt_tokens: int,
    panel: Sequence[str],
    judge: str,
    synthesizer: str | None,
    max_completion_tokens: int,
    tool_steps: int,
    judge_tool_steps: int,
    prices: dict[str, ModelPrice],
    judge_attempts: int,
) -> BudgetEstimate:
    """The most a run can spend: every panelist using every tool step, the judge retried."""
    out = max_completion_tokens
    calls = 0
    inputs = outputs = 0
    cost: float | None = 0.0

    def add(model: str, input_tokens: int, output_tokens: int) -> None:
        nonlocal calls, inputs, outputs, cost
        calls += 1
        inputs += input_tokens
        outputs += output_tokens
        price = prices.get(model)
        if price is None or cost is None:
            cost = None
        else:
            cost += input_tokens * price.prompt + output_tokens * price.completion

    for model in panel:
        for step in range(tool_steps + 1):
            add(model, prompt_tokens + step * (out + TOOL_RESULT_TOKENS), out)
    judge_prompt = prompt_tokens + JUDGE_INSTRUCTION_TOKENS + len(panel) * out
    for _ in range(judge_attempts):
        for step in range(judge_tool_steps + 1):
            add(judge, judge_prompt + step * (out + TOOL_RESULT_TOKENS), out)
    if synthesizer is not None:
        add(synthesizer, judge_prompt + out, out)
    return BudgetEstimate(calls=calls, input_tokens=inputs, output_tokens=outputs, cost=cost)


def check_budget(limits: FusionLimits, estimate: BudgetEstimate) -> None:
    """Refuse a run whose worst case could exceed the budget (the estimate in the error)."""
    if limits.max_total_tokens is not None and estimate.total_tokens > limits.max_total_tokens:
        raise BudgetExceededError(
            f"this deliberation could spend {estimate.describe()}, over max_total_tokens="
            f"{limits.max_total_tokens}; lower max_completion_tokens, max_tool_calls or the "
            "panel size, or raise the budget"
        )
    if limits.max_cost is not None:
        if estimate.cost is None:
            raise BudgetExceededError(
                "max_cost needs a price for every model of the run (FusionLimits.prices) to "
                f"bound the cost; estimate without prices: {estimate.describe()}"
            )
        if estimate.cost > limits.max_cost:
            raise BudgetExceededError(
                f"this deliberation could spend {estimate.describe()}, over max_cost="
                f"${limits.max_cost}; lower max_completion_tokens, max_tool_calls or the "
                "panel size, or raise the budget"
            )
