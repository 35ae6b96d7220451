"""Where a tool's deliberation reports its progress: the caller's graph and its callbacks.

The deliberation runs as a nested graph, whose custom events the caller would only see
with `subgraphs=True`. The relay puts them on the caller's own stream (an agent's
`stream_mode="custom"`), and hands them to LangChain's callbacks as custom events, so that
`astream_events` shows them too (`on_custom_event`, named by the event type): a
`ChatFusion` outside any graph reports its progress that way.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForToolRun,
    CallbackManager,
    CallbackManagerForToolRun,
)
from langchain_core.tracers._streaming import _StreamingCallbackHandler

from langchain_fusion.graph.progress import Writer, writer_listens


class ProgressRelay:
    """Forwards one deliberation's events to whoever listens, if anyone does."""

    def __init__(
        self,
        writer: Writer | None,
        run_manager: CallbackManagerForToolRun | AsyncCallbackManagerForToolRun | None,
    ) -> None:
        self.writer = writer if writer_listens(writer) else None
        self.callbacks: CallbackManager | AsyncCallbackManager | None = None
        # `astream_events` / `astream_log` attach a streaming handler (the same check
        # `BaseChatModel` makes before it streams tokens to callbacks).
        if run_manager is not None and any(
            isinstance(handler, _StreamingCallbackHandler) for handler in run_manager.handlers
        ):
            self.callbacks = run_manager.get_child()

    @property
    def listening(self) -> bool:
        return self.writer is not None or self.callbacks is not None

    def forward(self, event: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer(event)
        if isinstance(self.callbacks, CallbackManager):
            name, data = _split(event)
            self.callbacks.on_custom_event(name, data, run_id=self._run_id())

    async def aforward(self, event: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer(event)
        if isinstance(self.callbacks, AsyncCallbackManager):
            name, data = _split(event)
            await self.callbacks.on_custom_event(name, data, run_id=self._run_id())

    def _run_id(self) -> Any:
        assert self.callbacks is not None
        return self.callbacks.parent_run_id


def _split(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    data = {k: v for k, v in event.items() if k != "type"}
    return str(event["type"]), data
