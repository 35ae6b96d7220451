"""Limits of a run: the reliability settings (`FusionLimits`, `ModelPrice`) and the one
worst-case function every budget check uses (`worst_case`)."""

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
    "FusionLimits",
    "ModelPrice",
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
