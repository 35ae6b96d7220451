"""The command line's live progress view: a row per panelist, the judge, the answer.

`FusionProgress` reads what a fusion graph streams (`stream_mode=["custom", "messages"]`):
the contract's `fusion_call.*` events for the panel and the judge, and the chat models'
tokens for what the events do not carry (tool calls while researching, the judge's and
the synthesis's tokens). It is a Rich renderable, drawn by `rich.live.Live` on stderr.
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from langchain_fusion.contract import events
from langchain_fusion.contract.result import JUDGE_FAILURES

# What a row can be doing. Panel rows start `waiting` (request sent, no token yet).
WAITING = "waiting"
COMPARING = "comparing"
STREAMING = "streaming"
THINKING = "thinking"
RESEARCHING = "researching"
DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"

_ACTIVE = {WAITING, COMPARING, STREAMING, THINKING, RESEARCHING}
_STYLES = {
    WAITING: "dim",
    COMPARING: "yellow",
    STREAMING: "cyan",
    THINKING: "blue",
    RESEARCHING: "magenta",
    DONE: "green",
    FAILED: "red",
    SKIPPED: "dim",
}
_ANALYSIS_SCHEMA = "FusionAnalysis"
"""The judge's structured-output tool name, when its backend answers through tool calls."""
PREVIEW_LINES = 6
"""How many lines of the answer the live view shows while it streams."""


@dataclass
class Row:
    """One stage on screen: a panelist, the judge or the synthesis."""

    stage: str
    model: str
    state: str = WAITING
    tokens: int = 0
    started: float | None = None
    finished: float | None = None
    note: str = ""
    started_work: bool = False
    """The request is out (a judge row waits for the panel before that)."""
    spinner: Spinner | None = None
    """Kept from frame to frame: a spinner animates from its own start time."""

    def start(self, now: float, state: str) -> None:
        """Mark the request as sent."""
        if self.started is None:
            self.started = now
        self.started_work = True
        self.state = state

    def finish(self, now: float, state: str, note: str = "") -> None:
        """Mark the row as over: done, failed or skipped."""
        if self.started is not None and self.finished is None:
            self.finished = now
        self.state = state
        self.note = note or self.note

    def elapsed(self, now: float) -> float | None:
        """Seconds since the request went out (until it ended), None before."""
        if self.started is None:
            return None
        return (self.finished if self.finished is not None else now) - self.started


class FusionProgress:
    """Follows one deliberation and renders it: panel rows, judge row, answer row and preview.

    Feed it every `(mode, chunk)` pair of `graph.stream(..., stream_mode=["custom",
    "messages", ...])` through `update`; other modes are ignored. It is safe to render from
    `Live`'s refresh thread while `update` runs on the main thread.
    """

    def __init__(
        self,
        *,
        panel: Sequence[str] = (),
        judge: str = "",
        synthesizer: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Start with the panel and judge the graph announces (events may rename them)."""
        self._clock = clock
        self._lock = threading.Lock()
        self._began = clock()
        self._panel: dict[int, Row] = {
            index: Row("panel", label) for index, label in enumerate(panel)
        }
        self._judge = Row("judge", judge)
        self._answer = Row("answer", synthesizer or judge)
        self._answer_text = ""
        self._ended: float | None = None

    # -- reading the stream --------------------------------------------------------------

    def update(self, mode: str, chunk: Any) -> None:
        """Take one item of the graph's stream."""
        with self._lock:
            now = self._clock()
            if mode == "custom" and isinstance(chunk, Mapping):
                self._on_event(chunk, now)
            elif mode == "messages" and isinstance(chunk, tuple) and len(chunk) == 2:
                message, metadata = chunk
                if isinstance(message, BaseMessage) and isinstance(metadata, Mapping):
                    self._on_message(message, metadata, now)

    def finish(self, values: Mapping[str, Any]) -> None:
        """Close the rows from the graph's final state (`answer`, `synthesis_error`)."""
        with self._lock:
            now = self._clock()
            self._ended = now
            result = values.get("result")
            if values.get("answer"):
                usage = getattr(getattr(result, "usage", None), "synthesis", None)
                tokens = getattr(usage, "output_tokens", 0)
                self._answer.tokens = tokens or self._answer.tokens
                self._answer.finish(now, DONE)
            elif values.get("synthesis_error"):
                self._answer.finish(now, FAILED, _short(str(values["synthesis_error"])))
            elif self._answer.state in _ACTIVE:
                self._answer.finish(now, SKIPPED)
            for row in [*self._panel.values(), self._judge]:
                if row.state in _ACTIVE:
                    row.finish(now, FAILED if row.started_work else SKIPPED, "did not finish")

    def _on_event(self, event: Mapping[str, Any], now: float) -> None:
        kind = event.get("type")
        if kind == events.PANEL_ADDED:
            index = int(event.get("panel_index", len(self._panel)))
            added = self._panel.setdefault(index, Row("panel", str(event.get("model", ""))))
            added.start(now, WAITING)
        elif kind in (events.PANEL_DELTA, events.PANEL_REASONING_DELTA):
            row = self._seat(event)
            if row is not None and row.state not in (DONE, FAILED):
                row.start(now, STREAMING if kind == events.PANEL_DELTA else THINKING)
                row.tokens += 1  # one streamed delta is about one token
        elif kind == events.PANEL_COMPLETED:
            row = self._seat(event)
            if row is not None:
                usage = event.get("usage") or {}
                row.tokens = int(usage.get("output_tokens") or 0) or row.tokens
                model = str(event.get("model") or row.model)
                # The backend names the concrete model behind an alias: show both.
                row.finish(now, DONE, model if model != row.model else "")
        elif kind == events.PANEL_FAILED:
            row = self._seat(event)
            if row is not None:
                code = event.get("status_code")
                error = _short(str(event.get("error") or "failed"))
                row.finish(now, FAILED, f"{code}: {error}" if code else error)
        elif kind == events.ANALYSIS_IN_PROGRESS:
            self._judge.model = str(event.get("analyst_model") or self._judge.model)
            self._judge.start(now, COMPARING)
        elif kind == events.ANALYSIS_COMPLETED:
            self._judge.finish(now, DONE)
        elif kind == events.COMPLETED:
            self._on_completed(event.get("result") or {}, now)

    def _on_completed(self, result: Mapping[str, Any], now: float) -> None:
        reason = result.get("failure_reason")
        if not result.get("responses"):
            self._judge.finish(now, SKIPPED, "no panelist answered")
            self._answer.finish(now, SKIPPED)
            return
        if reason in JUDGE_FAILURES:
            self._judge.finish(now, FAILED, str(reason))
        elif self._judge.state in _ACTIVE:
            self._judge.finish(now, DONE)
        judge_usage = (result.get("usage") or {}).get("judge") or {}
        self._judge.tokens = int(judge_usage.get("output_tokens") or 0) or self._judge.tokens
        # The synthesis request goes out as soon as the result is complete.
        self._answer.start(now, WAITING)

    def _on_message(self, message: BaseMessage, metadata: Mapping[str, Any], now: float) -> None:
        # Only streamed chunks: a node's finished message is replayed on this stream too.
        if not isinstance(message, AIMessageChunk):
            return
        node = metadata.get("langgraph_node")
        calls = [c.get("name") for c in message.tool_call_chunks]
        if node == "panelist" and calls:
            row = self._panel_of(metadata)
            if row is not None and row.state not in (DONE, FAILED):
                row.start(now, RESEARCHING)
        elif node == "judge" and self._judge.state not in (DONE, FAILED, SKIPPED):
            researching = any(name and name != _ANALYSIS_SCHEMA for name in calls)
            if researching:
                self._judge.start(now, RESEARCHING)
            elif message.text or calls:
                self._judge.start(now, STREAMING)
                self._judge.tokens += 1
        elif node == "synthesis" and message.text:
            model = metadata.get("ls_model_name")
            if isinstance(model, str) and model:
                self._answer.model = model
            self._answer.start(now, STREAMING)
            self._answer.tokens += 1
            self._answer_text += message.text

    def _seat(self, event: Mapping[str, Any]) -> Row | None:
        index = event.get("panel_index")
        return self._panel.get(index) if isinstance(index, int) else None

    def _panel_of(self, metadata: Mapping[str, Any]) -> Row | None:
        # A panelist runs as the n-th `Send` of the fan-out, n being its seat.
        path = metadata.get("langgraph_path")
        if isinstance(path, tuple) and len(path) > 1 and isinstance(path[1], int):
            row = self._panel.get(path[1])
            if row is not None:
                return row
        model = metadata.get("ls_model_name")
        return next((row for row in self._panel.values() if row.model == model), None)

    # -- drawing -------------------------------------------------------------------------

    def table(self, *, live: bool = False) -> Table:
        """The rows as a table; `live` adds spinners to the rows still running."""
        with self._lock:
            return self._table(self._clock(), live)

    def _table(self, now: float, live: bool) -> Table:
        elapsed = (self._ended or now) - self._began
        answered = sum(row.state == DONE for row in self._panel.values())
        table = Table(
            title=f"fusion: {answered}/{len(self._panel)} panelists answered, {elapsed:.1f}s",
            title_justify="left",
            box=None,
            pad_edge=False,
            expand=False,
        )
        table.add_column("", width=1, no_wrap=True)
        table.add_column("stage", style="bold", no_wrap=True)
        table.add_column("model", no_wrap=True, overflow="ellipsis", max_width=40)
        table.add_column("state", no_wrap=True)
        table.add_column("tokens", justify="right", no_wrap=True)
        table.add_column("time", justify="right", no_wrap=True)
        table.add_column("note", overflow="ellipsis", no_wrap=True, max_width=60)
        rows = [*(self._panel[i] for i in sorted(self._panel)), self._judge, self._answer]
        for row in rows:
            seconds = row.elapsed(now)
            table.add_row(
                _marker(row, live),
                row.stage,
                row.model,
                Text(row.state, style=_STYLES.get(row.state, "")),
                str(row.tokens) if row.tokens else "",
                f"{seconds:.1f}s" if seconds is not None else "",
                Text(row.note, style="dim"),
            )
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """The live view: the table, then the last lines of the answer as it streams."""
        with self._lock:
            table = self._table(self._clock(), live=True)
            text = self._answer_text
        parts: list[RenderableType] = [table]
        if text:
            width = max(20, options.max_width - 2)
            lines = [
                wrapped
                for line in text.splitlines()
                for wrapped in (textwrap.wrap(line, width) or [""])
            ]
            parts.append(Text("\n".join(lines[-PREVIEW_LINES:]), style="italic"))
        yield Group(*parts)


def _marker(row: Row, live: bool) -> RenderableType:
    if row.state == DONE:
        return Text("✓", style="green")
    if row.state == FAILED:
        return Text("✗", style="red")
    if live and row.state in _ACTIVE and row.started_work:
        if row.spinner is None:
            row.spinner = Spinner("dots")
        row.spinner.style = _STYLES.get(row.state, "")
        return row.spinner
    return Text(" ")


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
