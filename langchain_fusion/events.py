"""Progress events, named as the hosted Responses API names them, on LangGraph's custom stream.

Each event is a dict with a `type` (one of the names below) and the fields of that event.
Read them with `graph.stream(..., stream_mode="custom")`.
"""

from __future__ import annotations

from typing import Any

from langgraph.config import get_stream_writer

IN_PROGRESS = "fusion_call.in_progress"
PANEL_ADDED = "fusion_call.panel.added"
PANEL_DELTA = "fusion_call.panel.delta"
PANEL_REASONING_DELTA = "fusion_call.panel.reasoning.delta"
PANEL_COMPLETED = "fusion_call.panel.completed"
PANEL_FAILED = "fusion_call.panel.failed"
ANALYSIS_IN_PROGRESS = "fusion_call.analysis.in_progress"
ANALYSIS_COMPLETED = "fusion_call.analysis.completed"
COMPLETED = "fusion_call.completed"

EVENT_TYPES: tuple[str, ...] = (
    IN_PROGRESS,
    PANEL_ADDED,
    PANEL_DELTA,
    PANEL_REASONING_DELTA,
    PANEL_COMPLETED,
    PANEL_FAILED,
    ANALYSIS_IN_PROGRESS,
    ANALYSIS_COMPLETED,
    COMPLETED,
)


def emit(event_type: str, **fields: Any) -> None:
    """Write one progress event to the running graph's custom stream (a no-op outside one)."""
    try:
        writer = get_stream_writer()
    except (RuntimeError, KeyError):  # outside a graph run: nobody is listening
        return
    writer({"type": event_type, **fields})


def listening() -> bool:
    """Whether the running graph's caller consumes custom events.

    Streaming a panelist token by token costs far more CPU than one response (the OpenAI
    SDK builds an object per chunk), so panelists stream only for a listener. LangGraph
    gives nodes a no-op writer when nobody streams `custom`, and a writer that closes over
    the stream otherwise; when the writer is of neither shape, assume someone listens.
    """
    try:
        writer = get_stream_writer()
    except (RuntimeError, KeyError):
        return False
    code = getattr(writer, "__code__", None)
    return code is None or bool(code.co_freevars)
