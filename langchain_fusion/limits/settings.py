"""Our reliability limits: deadline, straggler policy, quorum and budget.

The hosted service has none of these; they are the second link of the configuration chain:
`FusionParameters` (what users send, `contract/parameters.py`), then `FusionLimits` (what
we add), then the resolved set-up and per-run context (`graph/setup.py`, `graph/context.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langchain_fusion.contract.parameters import MAX_PANEL, FusionParameterError

DEFAULT_DEADLINE = 300.0
"""Seconds a whole deliberation may take; a hung panelist never holds it longer."""


class ModelPrice(BaseModel):
    """USD per token, as OpenRouter's model list gives them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)


class FusionLimits(BaseModel):
    """How long, how degraded and how expensive a deliberation may get."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_successful: int = Field(default=1, ge=1, le=MAX_PANEL)
    """Fewer answers than this and the run fails (`quorum_not_met`)."""
    straggler_grace: float | None = Field(default=None, ge=0)
    """Seconds to wait for the rest once `min_successful` panelists have answered; then the
    judge starts without them, and they are recorded as timed out. None: wait for all."""
    deadline: float | None = Field(default=DEFAULT_DEADLINE, gt=0)
    """Seconds for the whole deliberation. Panelists still running then are timed out."""
    max_total_tokens: int | None = Field(default=None, gt=0)
    """Tokens (in and out, every inner call) one deliberation may spend."""
    max_cost: float | None = Field(default=None, gt=0)
    """USD one deliberation may spend; needs a price for every model (`prices`) or a
    backend that reports cost."""
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Per-token prices by model name, for the estimate and for backends that report none."""


def limits_from(limits: FusionLimits | Mapping[str, Any] | None) -> FusionLimits:
    """`FusionLimits` from itself or its fields; bad values raise `FusionParameterError`."""
    if limits is None:
        return FusionLimits()
    if isinstance(limits, FusionLimits):
        return limits
    try:
        return FusionLimits.model_validate(dict(limits))
    except ValidationError as error:
        raise FusionParameterError(
            [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
        ) from None
