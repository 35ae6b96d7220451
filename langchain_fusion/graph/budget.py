"""The budget guard's worst case: what a run could spend, estimated before any call.

During the run, `RunClock` (graph/context.py) keeps the ledger and stops new calls once
the budget is spent; this module refuses, up front, a run that could go over it.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage

from langchain_fusion.contract.errors import DeliberationRefused
from langchain_fusion.limits import FusionLimits, ModelPrice
from langchain_fusion.limits.worst_case import (
    INSTRUCTION_TOKENS,
    TOOL_RESULT_TOKENS,
    WorstCase,
    deliberation_worst_case,
    message_tokens,
)

__all__ = [
    "JUDGE_INSTRUCTION_TOKENS",
    "TOOL_RESULT_TOKENS",
    "BudgetEstimate",
    "BudgetExceededError",
    "approximate_tokens",
    "check_budget",
    "estimate_budget",
]

JUDGE_INSTRUCTION_TOKENS = INSTRUCTION_TOKENS
BudgetEstimate = WorstCase
"""The worst case of one deliberation (`limits.WorstCase`; the old name is kept)."""


class BudgetExceededError(DeliberationRefused):
    """The run could exceed its budget; raised before any model is called."""


def approximate_tokens(messages: Sequence[BaseMessage]) -> int:
    """An upper bound of the conversation's tokens (`limits.message_tokens`: every part,
    every tool call, UTF-8 bytes)."""
    return message_tokens(messages)


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
    judges: Sequence[str] = (),
    attempts: int = 1,
) -> BudgetEstimate:
    """The most a run can spend (`limits.deliberation_worst_case`)."""
    return deliberation_worst_case(
        prompt_tokens=prompt_tokens,
        panel=panel,
        judge=judge,
        synthesizer=synthesizer,
        max_completion_tokens=max_completion_tokens,
        tool_steps=tool_steps,
        judge_tool_steps=judge_tool_steps,
        prices=prices,
        judge_attempts=judge_attempts,
        judges=judges,
        attempts=attempts,
    )


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
