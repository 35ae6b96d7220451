"""The embedded offline model: its server, the backend on it (`server.py`), its offline
defaults (`defaults.py`) and a deliberation graph on it (`graph.py`)."""

from langchain_fusion.local.defaults import (
    LOCAL_ANALYSIS_LIMITS,
    LOCAL_JUDGE_TOKENS,
    LOCAL_MODEL_NAME,
    LOCAL_MODEL_SETTINGS,
    LOCAL_PANEL_SIZE,
    LOCAL_PANEL_TOKENS,
)
from langchain_fusion.local.graph import create_local_fusion_graph
from langchain_fusion.local.server import LocalModelServer, LocalModelUnavailable, smollm2_path

__all__ = [
    "LOCAL_ANALYSIS_LIMITS",
    "LOCAL_JUDGE_TOKENS",
    "LOCAL_MODEL_NAME",
    "LOCAL_MODEL_SETTINGS",
    "LOCAL_PANEL_SIZE",
    "LOCAL_PANEL_TOKENS",
    "LocalModelServer",
    "LocalModelUnavailable",
    "create_local_fusion_graph",
    "smollm2_path",
]
