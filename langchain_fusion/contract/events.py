"""Progress events, named as the hosted Responses API names them (without `response.`).

Each event is a dict with a `type` (one of the names below) and that event's fields; a
deliberation writes them to LangGraph's custom stream (`stream_mode="custom"`). The server
puts them on the wire as `response.<type>`, with `item_id`, `output_index` and
`sequence_number` added.
"""

from __future__ import annotations

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

USAGE_FIELD = "usage"
"""Ours, on `panel.completed`, `panel.failed` (what the seat spent before it failed) and
`analysis.completed` (the analyst's calls): `{input_tokens, output_tokens, total_tokens,
cost}`, `cost` in USD where the backend reports it (else None). The hosted events allow
extra properties; the gateway sends it as is (`cost` left out when unknown)."""

# Ours, beyond the hosted events (a cascade is our extension): the first seats disagreed
# and the remaining seats are asked. Not sent on the gateway's wire.
CASCADE_ESCALATED = "fusion_call.cascade.escalated"
PANEL_RESEARCHING = "fusion_call.panel.researching"
"""Ours: a panelist runs a research step (`model`, `panel_index`, `research`: `{step,
max_steps, tool_calls: [{name, query}]}`). The hosted stream has no such event type, and
the official SDKs turn an unknown type into an unknown event: the gateway sends it as an
empty `panel.reasoning.delta` (`delta: ""`) carrying the same `research` field."""
EXTENSION_EVENT_TYPES: tuple[str, ...] = (CASCADE_ESCALATED, PANEL_RESEARCHING)
