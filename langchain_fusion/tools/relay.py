"""Where a tool's deliberation reports its progress: the caller's graph and its callbacks.

The deliberation runs as a nested graph, whose custom events the caller would only see
with `subgraphs=True`. The relay puts them on the caller's own stream (an agent's
`stream_mode="custom"`), and hands them to LangChain's callbacks as custom events, so that
`astream_events` shows them too (`on_custom_event`, named by the event type): a
`ChatFusion` outside any graph reports its progress that way.

Both are always given the events: there are a handful per run (the panel's tokens only
when asked for, graph/progress.py), and a writer or a callback manager nobody listens to
drops them.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForToolRun,
    CallbackManager,
    CallbackManagerForToolRun,
)

from langchain_fusion.graph.progress import Writer


class ProgressRelay:
    """Forwards one deliberation's events to the caller's stream and callbacks."""

    def __init__(
        self,
        writer: Writer | None,
        run_manager: CallbackManagerForToolRun | AsyncCallbackManagerForToolRun | None,
    ) -> None:
        self.writer = writer
        self.callbacks: CallbackManager | AsyncCallbackManager | None = (
            run_manager.get_child() if run_manager is not None and run_manager.handlers else None
        )

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
