"""Limits of a run: the reliability settings (`FusionLimits`, `ModelPrice`), the one
worst-case function every budget check uses (`worst_case`), and the in-run guard that
re-counts it from each call's actual prompt (`guard`)."""

from langchain_fusion.limits.guard import BudgetSpent, SpendGuard
from langchain_fusion.limits.settings import (
    DEFAULT_DEADLINE,
    FusionLimits,
    ModelPrice,
    limits_from,
)
from langchain_fusion.limits.worst_case import (
    WorstCase,
    call_worst_case,
    deliberation_worst_case,
    message_tokens,
    outer_worst_case,
    payload_tokens,
    text_tokens,
    tools_tokens,
)

__all__ = [
    "DEFAULT_DEADLINE",
    "BudgetSpent",
    "FusionLimits",
    "ModelPrice",
    "SpendGuard",
    "WorstCase",
    "call_worst_case",
    "deliberation_worst_case",
    "limits_from",
    "message_tokens",
    "outer_worst_case",
    "payload_tokens",
    "text_tokens",
    "tools_tokens",
]
