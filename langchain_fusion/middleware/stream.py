"""The deliberation's progress in LangGraph's `stream_events(version="v3")`: a stream
transformer (LangGraph's extension point for typed projections) that puts the fusion
progress events of a run's own scope on `run.fusion`.

`FusionMiddleware` registers it on its agent; any other graph takes it at the call:
`graph.stream_events(input, version="v3", transformers=[FusionProgressTransformer])`.
"""

from __future__ import annotations

from typing import Any

from langgraph.stream import ProtocolEvent, StreamChannel, StreamTransformer

from langchain_fusion.contract.events import EVENT_TYPES

PROJECTION = "fusion"


class FusionProgressTransformer(StreamTransformer):
    """`run.fusion`: the `fusion_call.*` progress events, in order (the other custom
    events stay on `run.custom`)."""

    _native = True  # LangGraph's documented switch: the projection is `run.fusion` too
    required_stream_modes = ("custom",)

    def __init__(self, scope: tuple[str, ...] = ()) -> None:
        super().__init__(scope)
        self._events: StreamChannel[dict[str, Any]] = StreamChannel()
        self._scope = list(scope)

    def init(self) -> dict[str, Any]:
        return {PROJECTION: self._events}

    def process(self, event: ProtocolEvent) -> bool:
        if event["method"] != "custom":
            return True
        params = event["params"]
        data = params["data"]
        if (
            params["namespace"] == self._scope
            and isinstance(data, dict)
            and data.get("type") in EVENT_TYPES
        ):
            self._events.push(data)
        return True
