"""Progress events on the run's stream writer (LangGraph's `custom` stream mode).

Nodes write through the writer of their `Runtime`. Whether anyone listens is decided once
per run, from the stream modes the caller asked for, and kept in the run's context: a
panelist then streams its tokens as `panel.delta` events; otherwise it asks for one
response, far cheaper (the OpenAI SDK builds an object per streamed chunk).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from types import CodeType
from typing import Any

from langchain_core.messages import BaseMessageChunk
from langchain_core.runnables import RunnableConfig
from langgraph._internal._constants import CONF, CONFIG_KEY_STREAM
from langgraph.pregel import Pregel

from langchain_fusion.contract import events

Writer = Callable[[Any], None]


def requested_custom(stream_mode: Any) -> bool:
    """Whether a `stream_mode` argument (a mode or a list of modes) includes `custom`."""
    if stream_mode is None:
        return False
    modes: Iterable[Any] = [stream_mode] if isinstance(stream_mode, str) else stream_mode
    return "custom" in modes


def parent_streams_custom(config: RunnableConfig | None) -> bool:
    """Whether a graph that runs us as a subgraph streams `custom` events to its caller.

    LangGraph hands its stream, with the modes its caller asked for, to subgraphs (when
    streaming with `subgraphs=True`) in the run's config, and nowhere public: it is read
    here and nowhere else.
    """
    stream = ((config or {}).get(CONF) or {}).get(CONFIG_KEY_STREAM)
    return "custom" in (getattr(stream, "modes", None) or ())


def writer_listens(writer: Writer | None) -> bool:
    """Whether the stream writer of the graph run we are inside goes anywhere.

    A tool or a chat model run inside someone else's graph (an agent) forwards our events
    to that graph's writer. When that graph's caller does not stream `custom`, LangGraph
    gives its nodes a writer that drops everything, one defined in `Pregel.stream` (and
    one in `Pregel.astream`); those are found in LangGraph's own code, once, and compared
    with the writer we are given.
    """
    if writer is None:
        return False
    return getattr(writer, "__code__", None) not in _silent_writer_codes()


@functools.cache
def _silent_writer_codes() -> frozenset[CodeType]:
    """The code of the writers LangGraph gives nodes when nobody streams `custom` events:
    the functions named `stream_writer` in `Pregel.stream` / `astream` that do nothing."""
    codes = set()
    for method in (Pregel.stream, Pregel.astream):
        for constant in method.__code__.co_consts:
            if (
                isinstance(constant, CodeType)
                and constant.co_name == "stream_writer"
                and not constant.co_names
                and not constant.co_freevars
            ):
                codes.add(constant)
    return frozenset(codes)


class Progress:
    """Writes one run's progress events; silent when nobody listens."""

    def __init__(self, writer: Writer | None, *, listening: bool) -> None:
        self._writer = writer if listening else None

    @property
    def listening(self) -> bool:
        return self._writer is not None

    def emit(self, event_type: str, **fields: Any) -> None:
        if self._writer is not None:
            self._writer({"type": event_type, **fields})

    def panel_delta(self, model: str, index: int, chunk: BaseMessageChunk) -> None:
        """A panelist's streamed tokens: its answer, and its reasoning where reported."""
        if text := chunk.text:
            self.emit(events.PANEL_DELTA, model=model, panel_index=index, delta=text)
        if reasoning := chunk.additional_kwargs.get("reasoning_content"):
            self.emit(events.PANEL_REASONING_DELTA, model=model, panel_index=index, delta=reasoning)
