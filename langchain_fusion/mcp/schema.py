"""What the MCP tools take and return: the arguments, checked before any model is called,
and the structured outputs whose JSON schemas the tools advertise (`outputSchema`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from langchain_fusion.contract.errors import unknown_keywords
from langchain_fusion.contract.parameters import FusionParameterError, FusionParameters
from langchain_fusion.contract.result import (
    FailedModel,
    FailureReason,
    FusionAnalysis,
    FusionResult,
    PanelResponse,
    Source,
)

PARAMETER_ARGUMENTS = ("analysis_models", "model", "preset", "max_tool_calls", "temperature")
"""The contract's parameters a caller may set per call."""
FUSION_ARGUMENTS = ("prompt", *PARAMETER_ARGUMENTS)
MAX_PROMPT_CHARS = 200_000
"""A prompt past this is refused: the panel would be asked to read it N times over."""


class ArgumentError(ValueError):
    """A call's arguments are invalid; nothing was called. The message says what to fix."""


class FusionOutput(BaseModel):
    """The contract's result: what the hosted fusion tool returns."""

    status: Literal["ok", "error"]
    analysis: FusionAnalysis | None = None
    """Left out when the judge failed: the answers below still hold the panel's work."""
    responses: list[PanelResponse] = Field(default_factory=list)
    failed_models: list[FailedModel] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    failure_reason: FailureReason | None = None
    error: str | None = None
    """Why the run failed, when `status` is `error`."""

    @classmethod
    def of(cls, result: FusionResult) -> FusionOutput:
        return cls(
            status=result.status,
            analysis=result.analysis,
            responses=result.responses,
            failed_models=result.failed_models,
            sources=result.sources,
            failure_reason=result.failure_reason,
            error=(result.failure_detail or result.failure_reason)
            if result.status == "error"
            else None,
        )

    def contract_json(self) -> dict[str, Any]:
        """The JSON a client reads: an optional field without a value is left out."""
        return self.model_dump(mode="json", exclude_none=True)


class FusionRun(BaseModel):
    """A background run (`fusion_start`, `fusion_result`)."""

    run_id: str
    status: Literal["in_progress", "completed", "failed"]
    panel_done: int = 0
    """Panelists that have answered or failed so far."""
    panel_size: int = 0
    answer: str | None = None
    """The final answer, once completed."""
    result: FusionOutput | None = None
    """The contract's result, once completed."""
    error: str | None = None
    """Why the run could not finish (`failed`)."""

    def contract_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def parse_arguments(arguments: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The prompt and the contract's parameters the call sets (validated, only those set)."""
    try:
        unknown_keywords("fusion", arguments, FUSION_ARGUMENTS)
    except TypeError as error:
        raise ArgumentError(str(error).replace("keyword argument", "argument")) from None
    prompt = arguments.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ArgumentError("prompt: a non-empty string is required")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ArgumentError(f"prompt: over {MAX_PROMPT_CHARS} characters")
    given = {k: arguments[k] for k in PARAMETER_ARGUMENTS if arguments.get(k) is not None}
    try:
        parameters = FusionParameters.from_json(given)
    except FusionParameterError as error:
        raise ArgumentError("invalid fusion parameters: " + "; ".join(error.problems)) from None
    return prompt, parameters.model_dump(exclude_unset=True)
