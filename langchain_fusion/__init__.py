"""Multi-model deliberation (OpenRouter Fusion) as LangChain and LangGraph parts."""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from langchain_fusion.middleware import FusionMiddleware


def __getattr__(name: str) -> Any:
    # `langchain.agents` loads on first use: the CLI and the gateway do not need it.
    if name == "FusionMiddleware":
        from langchain_fusion.middleware import FusionMiddleware

        return FusionMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "Cascade",
    "CascadeReport",
    "ChatFusion",
    "ChatOpenAICompatible",
    "FailedModel",
    "FusionAnalysis",
    "FusionMiddleware",
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
