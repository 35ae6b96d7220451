"""Progress events on the run's stream writer (LangGraph's `custom` stream mode).

Nodes write through the writer of their `Runtime`. Every event but the panel's tokens is
always written: there are a handful per run, and LangGraph's writer drops them when
nobody streams `custom`. A panelist's tokens (`panel.delta`) are another matter: asking for
them makes the panelist stream its call, and the OpenAI SDK builds an object per streamed
chunk, so a run streams them only when told to (`stream_panel_tokens`, decided once per
run and kept in its context, see `panel_tokens_wanted`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from langchain_core.messages import BaseMessageChunk

from langchain_fusion.contract import events

Writer = Callable[[Any], None]

STREAM_PANEL_TOKENS_KEY = "fusion_stream_panel_tokens"
"""A run's `configurable` key: a caller that streams asks the deliberation it runs for the
panel's tokens (`ChatFusion` sets it on its fusion tool's call when it is streamed)."""


def requested_custom(stream_mode: Any) -> bool:
    """Whether a `stream_mode` argument (a mode or a list of modes) includes `custom`."""
    if stream_mode is None:
        return False
    modes: Iterable[Any] = [stream_mode] if isinstance(stream_mode, str) else stream_mode
    return "custom" in modes


def panel_tokens_wanted(switch: bool | None, *, caller_streams: bool) -> bool:
    """The explicit switch (`stream_panel_tokens`) wins; None follows the caller, which
    streams when it asked for `stream_mode="custom"` (or a streamed `ChatFusion`)."""
    return caller_streams if switch is None else switch


class Progress:
    """Writes one run's progress events; panel tokens only when the run streams them."""

    def __init__(self, writer: Writer | None, *, stream_tokens: bool) -> None:
        self._writer = writer
        self.stream_tokens = stream_tokens

    def emit(self, event_type: str, **fields: Any) -> None:
        if self._writer is not None:
            self._writer({"type": event_type, **fields})

    def panel_delta(self, model: str, index: int, chunk: BaseMessageChunk) -> None:
        """A panelist's streamed tokens: its answer, and its reasoning where reported."""
        if not self.stream_tokens:
            return
        if text := chunk.text:
            self.emit(events.PANEL_DELTA, model=model, panel_index=index, delta=text)
        if reasoning := chunk.additional_kwargs.get("reasoning_content"):
            self.emit(events.PANEL_REASONING_DELTA, model=model, panel_index=index, delta=reasoning)
