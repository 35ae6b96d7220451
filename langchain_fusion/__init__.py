"""Multi-model deliberation (OpenRouter Fusion) as LangChain and LangGraph parts."""

from langchain_fusion.backends import ChatOpenAICompatible, OpenAICompatibleBackend
from langchain_fusion.chat_models import ChatFusion
from langchain_fusion.contract.cascade import Cascade
from langchain_fusion.contract.parameters import (
    FusionParameterError,
    FusionParameters,
    ReasoningConfig,
    ToolSpec,
)
from langchain_fusion.contract.presets import PRESETS, Preset, register_preset
from langchain_fusion.contract.result import (
    CascadeReport,
    FailedModel,
    FusionAnalysis,
    FusionResult,
    FusionUsage,
    PanelResponse,
    Source,
    TokenUsage,
)
from langchain_fusion.graph import create_fusion_graph
from langchain_fusion.tools import FusionTool

__all__ = [
    "PRESETS",
    "Cascade",
    "CascadeReport",
    "ChatFusion",
    "ChatOpenAICompatible",
    "FailedModel",
    "FusionAnalysis",
    "FusionParameterError",
    "FusionParameters",
    "FusionResult",
    "FusionTool",
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
