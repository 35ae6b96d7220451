"""The deliberation as a LangGraph graph: panel → judge → synthesis.

`builder.py` wires the steps; each step has its module (`panel`, `quorum`, `judge`,
`synthesis`), written once for `invoke` and `ainvoke` as a plan (`steps`). The set-up is
resolved once per graph (`setup`); each run gets its own context (`context`).
"""

from langchain_fusion.graph.builder import (
    DEPTH_METADATA_KEY,
    FusionGraph,
    build_graph,
    build_seat_graph,
    create_fusion_graph,
)
from langchain_fusion.graph.context import FusionContext
from langchain_fusion.graph.setup import FusionSetup, build_setup

__all__ = [
    "DEPTH_METADATA_KEY",
    "FusionContext",
    "FusionGraph",
    "FusionSetup",
    "build_graph",
    "build_seat_graph",
    "build_setup",
    "create_fusion_graph",
]
