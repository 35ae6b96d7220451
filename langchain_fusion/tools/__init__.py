"""The deliberation as a LangChain tool (`FusionTool`), and the keyword fields it shares
with `ChatFusion` (`FusionSettings`)."""

from langchain_fusion.tools.fusion import (
    DeliberationRecursionError,
    FusionTool,
    count_deliberations,
    deliberation_messages,
)
from langchain_fusion.tools.settings import FusionSettings

__all__ = [
    "DeliberationRecursionError",
    "FusionSettings",
    "FusionTool",
    "count_deliberations",
    "deliberation_messages",
]
