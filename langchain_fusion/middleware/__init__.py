"""Fusion as LangChain agent middleware (`FusionMiddleware` for `create_agent`)."""

from langchain_fusion.middleware.fusion import FusionAgentState, FusionMiddleware, When

__all__ = ["FusionAgentState", "FusionMiddleware", "When"]
