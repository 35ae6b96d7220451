"""Fusion as LangChain agent middleware (`FusionMiddleware` for `create_agent`)."""

from langchain_fusion.middleware.fusion import FusionAgentState, FusionMiddleware, When
from langchain_fusion.middleware.stream import FusionProgressTransformer

__all__ = ["FusionAgentState", "FusionMiddleware", "FusionProgressTransformer", "When"]
