"""Multi-model deliberation (OpenRouter Fusion) as LangChain and LangGraph parts."""

from langchain_fusion.backends import ChatOpenAICompatible, OpenAICompatibleBackend
from langchain_fusion.graph import create_fusion_graph
from langchain_fusion.parameters import (
    FusionParameterError,
    FusionParameters,
    ReasoningConfig,
    ToolSpec,
)
from langchain_fusion.presets import PRESETS, Preset, register_preset
from langchain_fusion.result import (
    FailedModel,
    FusionAnalysis,
    FusionResult,
    FusionUsage,
    PanelResponse,
    Source,
    TokenUsage,
)

__all__ = [
    "PRESETS",
    "ChatOpenAICompatible",
    "FailedModel",
    "FusionAnalysis",
    "FusionParameterError",
    "FusionParameters",
    "FusionResult",
    "FusionUsage",
    "OpenAICompatibleBackend",
    "PanelResponse",
    "Preset",
    "ReasoningConfig",
    "Source",
    "TokenUsage",
    "ToolSpec",
    "create_fusion_graph",
    "register_preset",
]
