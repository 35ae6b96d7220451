"""The hosted service's contract: what users send (parameters, presets), what they get back
(the result, its failure codes) and the progress events they watch."""

from langchain_fusion.contract.cascade import Cascade
from langchain_fusion.contract.parameters import (
    FusionParameterError,
    FusionParameters,
    ReasoningConfig,
    ToolSpec,
)
from langchain_fusion.contract.presets import PRESETS, Preset, get_preset, register_preset
from langchain_fusion.contract.result import (
    AnalysisLimits,
    CascadeReport,
    FailedModel,
    FailureReason,
    FusionAnalysis,
    FusionResult,
    FusionUsage,
    PanelResponse,
    Source,
    TokenUsage,
)

__all__ = [
    "PRESETS",
    "AnalysisLimits",
    "Cascade",
    "CascadeReport",
    "FailedModel",
    "FailureReason",
    "FusionAnalysis",
    "FusionParameterError",
    "FusionParameters",
    "FusionResult",
    "FusionUsage",
    "PanelResponse",
    "Preset",
    "ReasoningConfig",
    "Source",
    "TokenUsage",
    "ToolSpec",
    "get_preset",
    "register_preset",
]
