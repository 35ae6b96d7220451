"""One streamed Responses API response: every event it sends, typed, in order.

`ResponseWriter` keeps the response while it streams: the sequence number, the output
items in the order they were added (so that `response.completed` lists exactly the items
the stream announced), and the open message. The fusion progress events go out as the
hosted `response.fusion_call.*` events (`wire/events.py`), each naming a panelist by its
concrete model: an event that would name a panelist before its concrete name is known
(its first upstream token reports it) waits for it, so that one panelist has one name in
the whole stream. Our `panel.researching` goes out as an empty `panel.reasoning.delta`
with its `research` field: the hosted stream has no event type for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from pydantic import ValidationError
from sse_starlette import ServerSentEvent

from langchain_fusion.contract import events as contract_events
from langchain_fusion.server.errors import GatewayError
from langchain_fusion.server.wire.events import (
    FUSION_EVENTS,
    ArgumentsDeltaEvent,
    ArgumentsDoneEvent,
    ContentPartEvent,
    ErrorEvent,
    Event,
    OutputItemEvent,
    ResponseEvent,
    TextDeltaEvent,
    TextDoneEvent,
)
from langchain_fusion.server.wire.names import ConcreteNames
from langchain_fusion.server.wire.responses import (
    FunctionCallItem,
    FusionItem,
    MessageItem,
    OutputItem,
    OutputText,
    ResponseError,
    ResponseObject,
    message_item,
)

_NAMED = (
    contract_events.PANEL_ADDED,
    contract_events.PANEL_DELTA,
    contract_events.PANEL_REASONING_DELTA,
    contract_events.PANEL_COMPLETED,
    contract_events.PANEL_FAILED,
)
"""Progress events that name a panelist."""
_FINAL = (contract_events.PANEL_COMPLETED, contract_events.PANEL_FAILED)
_WAITS = (contract_events.PANEL_ADDED, contract_events.ANALYSIS_IN_PROGRESS)
"""Events that wait for their model's concrete name until its first token or result."""
_ANALYST = "analyst"
"""The seat of the analysis in a fusion run (panelists' seats are their panel index)."""


def error_code(error: GatewayError) -> str:
    """The Responses API's `error.code` (a string by its schema) for a failure."""
    return "rate_limit_exceeded" if error.status == 429 else "server_error"


class ResponseWriter:
    """One streamed response: every event it sends, in order."""

    def __init__(self, response: ResponseObject, names: ConcreteNames) -> None:
        self.response = response
        self.names = names
        self.sequence = 0
        self._text_item: MessageItem | None = None
        self._text: list[str] = []
        self._fusion: dict[str, tuple[int, FusionItem]] = {}
        """Open fusion items by the run that feeds them: (output index, item)."""
        self._panelists: dict[tuple[str, Any], str] = {}
        """(fusion run, panel index) → the name its events carry, fixed at first use."""
        self._waiting: dict[tuple[str, Any], list[tuple[str, dict[str, Any]]]] = {}

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence - 1

    def _send(self, event: Event) -> ServerSentEvent:
        return event.sse()

    def start(self) -> list[ServerSentEvent]:
        snapshot = self.response.model_copy(update={"output": []})
        return [
            self._send(ResponseEvent(type=kind, sequence_number=self._next(), response=snapshot))
            for kind in ("response.created", "response.in_progress")
        ]

    def _add(self, item: OutputItem) -> tuple[int, ServerSentEvent]:
        index = len(self.response.output)
        self.response.output.append(item)
        added = OutputItemEvent(
            type="response.output_item.added",
            sequence_number=self._next(),
            output_index=index,
            item=item.model_copy(),
        )
        return index, self._send(added)

    def _done(self, index: int, item: OutputItem) -> ServerSentEvent:
        self.response.output[index] = item
        done = OutputItemEvent(
            type="response.output_item.done",
            sequence_number=self._next(),
            output_index=index,
            item=item,
        )
        return self._send(done)

    # --- fusion -------------------------------------------------------------------------

    def fusion_started(self, run: str, item: FusionItem) -> list[ServerSentEvent]:
        out = self.close_text()
        index, added = self._add(item)
        self._fusion[run] = (index, item)
        return [*out, added]

    def fusion_progress(
        self, run: str, kind: str, data: Mapping[str, Any]
    ) -> list[ServerSentEvent]:
        """A contract progress event as the hosted `response.<type>` event, sent once the
        model it names has its concrete name (earlier events of that seat wait for it)."""
        if kind == contract_events.PANEL_RESEARCHING:  # ours: see contract/events.py
            kind, data = contract_events.PANEL_REASONING_DELTA, {**data, "delta": ""}
        if kind not in FUSION_EVENTS or run not in self._fusion:
            return []
        fields = {k: v for k, v in data.items() if v is not None}
        out = self._release(run)
        if kind == contract_events.ANALYSIS_IN_PROGRESS:
            fields["model"] = str(fields.get("analyst_model") or fields.get("judge_model") or "")
            seat: tuple[str, Any] = (run, _ANALYST)
        elif kind in _NAMED:
            seat = (run, fields.get("panel_index", fields.get("model")))
        else:  # the analysis and the call end: whatever still waits goes out first
            return [*out, *self._flush_waiting(run), *self._fusion_event(run, kind, fields)]
        if seat not in self._panelists:
            configured = str(fields.get("model", ""))
            known = None if "#" in configured else self.names.concrete(configured)
            if known is None and kind in _FINAL:
                known = configured  # its result names it so: the name it keeps
            if known is None and kind in _WAITS:
                self._waiting.setdefault(seat, []).append((kind, fields))
                return out
            if known is None:  # its tokens are here: they are not held back for a name
                known = str(self._waiting.get(seat, [(kind, fields)])[0][1].get("model", ""))
            self._panelists[seat] = known
        return [*out, *self._send_seat(seat, [*self._waiting.pop(seat, []), (kind, fields)])]

    def _send_seat(
        self, seat: tuple[str, Any], events: list[tuple[str, dict[str, Any]]]
    ) -> list[ServerSentEvent]:
        name = self._panelists[seat]
        out: list[ServerSentEvent] = []
        for kind, fields in events:
            named = {**fields, "model": name}
            if kind == contract_events.ANALYSIS_IN_PROGRESS:
                named.update(analyst_model=name, judge_model=name)
            out += self._fusion_event(seat[0], kind, named)
        return out

    def _release(self, run: str) -> list[ServerSentEvent]:
        """Waiting seats of `run` whose concrete name has been learned since."""
        out: list[ServerSentEvent] = []
        for seat in [s for s in self._waiting if s[0] == run]:
            configured = str(self._waiting[seat][0][1].get("model", ""))
            if (known := self.names.concrete(configured)) is not None:
                self._panelists[seat] = known
                out += self._send_seat(seat, self._waiting.pop(seat))
        return out

    def _fusion_event(
        self, run: str, kind: str, fields: Mapping[str, Any]
    ) -> list[ServerSentEvent]:
        index, item = self._fusion[run]
        model = FUSION_EVENTS[kind]
        known = {name: fields[name] for name in model.model_fields if name in fields}
        try:
            event = model(
                **known,
                item_id=item.id or "",
                output_index=index,
                sequence_number=self.sequence,
            )
        except ValidationError:
            return []  # an event the hosted schema cannot carry (a missing field): not sent
        self.sequence += 1
        return [self._send(event)]

    def _flush_waiting(self, run: str) -> list[ServerSentEvent]:
        """Events still waiting for a name when it is their last chance: sent with the
        name they have (the configured one)."""
        out = self._release(run)
        for seat in [s for s in self._waiting if s[0] == run]:
            pending = self._waiting.pop(seat)
            self._panelists[seat] = str(pending[0][1].get("model", ""))
            out += self._send_seat(seat, pending)
        return out

    def fusion_finished(self, run: str, item: FusionItem) -> list[ServerSentEvent]:
        if run not in self._fusion:
            index, added = self._add(item)
            return [added, self._done(index, item)]
        out = self._flush_waiting(run)
        index, _ = self._fusion.pop(run)
        return [*out, self._done(index, item)]

    def close_fusion(self) -> list[ServerSentEvent]:
        """Fusion items whose run never reported its end: done, as incomplete."""
        out = []
        for run in list(self._fusion):
            out += self._flush_waiting(run)
            index, item = self._fusion.pop(run)
            out.append(self._done(index, item.model_copy(update={"status": "incomplete"})))
        return out

    def fusion_item(self, item: FusionItem) -> list[ServerSentEvent]:
        """A fusion call that never ran (capped): added and done at once."""
        out = self.close_text()
        index, added = self._add(item)
        return [*out, added, self._done(index, item)]

    # --- the answer ---------------------------------------------------------------------

    def text(self, delta: str) -> list[ServerSentEvent]:
        out: list[ServerSentEvent] = []
        if self._text_item is None:
            item = message_item("", status="in_progress")
            index, added = self._add(item)
            self._text_item, self._text = item, []
            part = ContentPartEvent(
                type="response.content_part.added",
                sequence_number=self._next(),
                item_id=item.id,
                output_index=index,
                content_index=0,
                part=OutputText(text=""),
            )
            out += [added, self._send(part)]
        self._text.append(delta)
        event = TextDeltaEvent(
            sequence_number=self._next(),
            item_id=self._text_item.id,
            output_index=self._text_index,
            content_index=0,
            delta=delta,
            logprobs=[],
        )
        out.append(self._send(event))
        return out

    @property
    def _text_index(self) -> int:
        return next(i for i, o in enumerate(self.response.output) if o is self._text_item)

    def close_text(self) -> list[ServerSentEvent]:
        if self._text_item is None:
            return []
        item, index, text = self._text_item, self._text_index, "".join(self._text)
        self._text_item = None
        common = {"item_id": item.id, "output_index": index, "content_index": 0}
        text_done = TextDoneEvent(sequence_number=self._next(), **common, text=text, logprobs=[])
        part_done = ContentPartEvent(
            type="response.content_part.done",
            sequence_number=self._next(),
            **common,
            part=OutputText(text=text),
        )
        return [
            self._send(text_done),
            self._send(part_done),
            self._done(index, message_item(text, ident=item.id)),
        ]

    def function_call(self, item: FunctionCallItem) -> list[ServerSentEvent]:
        opened = item.model_copy(update={"arguments": "", "status": "in_progress"})
        index, added = self._add(opened)
        common = {"item_id": item.id, "output_index": index}
        delta = ArgumentsDeltaEvent(sequence_number=self._next(), **common, delta=item.arguments)
        done = ArgumentsDoneEvent(
            sequence_number=self._next(), **common, name=item.name, arguments=item.arguments
        )
        return [added, self._send(delta), self._send(done), self._done(index, item)]

    def completed(self) -> ServerSentEvent:
        kind = (
            "response.incomplete" if self.response.status == "incomplete" else "response.completed"
        )
        return self._send(
            ResponseEvent(
                type=cast(Any, kind), sequence_number=self._next(), response=self.response
            )
        )

    def failed(self, error: GatewayError) -> list[ServerSentEvent]:
        """An `error` event, then `response.failed` with the error on the response."""
        code = error_code(error)
        self.response.status = "failed"
        self.response.error = ResponseError(code=code, message=error.message)
        error_event = ErrorEvent(
            sequence_number=self._next(),
            code=code,
            message=error.message,
            param=None,
            availability=error.availability,
        )
        failed = ResponseEvent(
            type="response.failed", sequence_number=self._next(), response=self.response
        )
        return [self._send(error_event), self._send(failed)]
