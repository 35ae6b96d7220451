"""The Responses API's objects and stream events, as OpenAI and the hosted API define them.

`ResponseWriter` keeps one response's state while it streams: the sequence number, the
output items in the order they were added (so that `response.completed` lists exactly the
items the stream announced), and the open message. The fusion progress events go out as
`response.fusion_call.*` with `item_id`, `output_index` and `sequence_number`, carrying
exactly the fields the hosted reference gives each event.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import BaseMessage

from langchain_fusion.contract import events
from langchain_fusion.server.errors import GatewayError

# The fields of each hosted event (besides type, item_id, output_index, sequence_number).
FUSION_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    events.IN_PROGRESS: (),
    events.PANEL_ADDED: ("model",),
    events.PANEL_DELTA: ("model", "delta"),
    events.PANEL_REASONING_DELTA: ("model", "delta"),
    events.PANEL_COMPLETED: ("model", "content"),
    events.PANEL_FAILED: ("model", "error", "status_code"),
    events.ANALYSIS_IN_PROGRESS: ("analyst_model", "judge_model"),
    events.ANALYSIS_COMPLETED: ("analysis",),
    events.COMPLETED: (),
}


def new_response(request_fields: Mapping[str, Any], model: str) -> dict[str, Any]:
    """A response object in progress, echoing the request's settings as OpenAI does."""
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "model": model,
        "output": [],
        "usage": None,
        "error": None,
        "incomplete_details": None,
        "instructions": request_fields.get("instructions"),
        "metadata": request_fields.get("metadata") or {},
        "parallel_tool_calls": request_fields.get("parallel_tool_calls", True) is not False,
        "temperature": request_fields.get("temperature"),
        "top_p": request_fields.get("top_p"),
        "max_output_tokens": request_fields.get("max_output_tokens"),
        "tool_choice": request_fields.get("tool_choice") or "auto",
        "tools": list(request_fields.get("tools") or []),
        "text": {"format": {"type": "text"}},
        "store": False,
        "background": False,
        "previous_response_id": None,
        "truncation": "disabled",
    }


def message_item(
    text: str, *, status: str = "completed", ident: str | None = None
) -> dict[str, Any]:
    return {
        "type": "message",
        "id": ident or f"msg_{uuid.uuid4().hex}",
        "role": "assistant",
        "status": status,
        "content": [] if status == "in_progress" else [output_text(text)],
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_items(message: BaseMessage) -> list[dict[str, Any]]:
    """The caller's tool calls as `function_call` items."""
    return [
        {
            "type": "function_call",
            "id": f"fc_{uuid.uuid4().hex}",
            "call_id": call["id"] or f"call_{uuid.uuid4().hex[:24]}",
            "name": call["name"],
            "arguments": json.dumps(call["args"]),
            "status": "completed",
        }
        for call in getattr(message, "tool_calls", None) or []
    ]


def finish(response: dict[str, Any], message: BaseMessage | None, usage: dict[str, Any]) -> None:
    """Mark a response completed (or incomplete, when the output limit cut the answer)."""
    metadata = message.response_metadata if message is not None else {}
    if isinstance(metadata.get("model_name"), str) and metadata["model_name"]:
        response["model"] = metadata["model_name"]
    response["usage"] = usage
    response["completed_at"] = int(time.time())
    if metadata.get("finish_reason") == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    else:
        response["status"] = "completed"


def error_code(error: GatewayError) -> str:
    """The Responses API's `error.code` (a string by its schema) for a failure."""
    return "rate_limit_exceeded" if error.status == 429 else "server_error"


class ResponseWriter:
    """One streamed response: every event it sends, in order."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self.sequence = 0
        self._text_item: dict[str, Any] | None = None
        self._text: list[str] = []
        self._fusion: dict[str, tuple[int, dict[str, Any]]] = {}
        """Open fusion items by the run that feeds them: (output index, item)."""

    def event(self, kind: str, **fields: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(body)}\n\n".encode()

    def start(self) -> list[bytes]:
        snapshot = dict(self.response, output=[])
        return [
            self.event("response.created", response=snapshot),
            self.event("response.in_progress", response=snapshot),
        ]

    def _add(self, item: dict[str, Any]) -> tuple[int, bytes]:
        index = len(self.response["output"])
        self.response["output"].append(item)
        return index, self.event("response.output_item.added", output_index=index, item=dict(item))

    def _done(self, index: int, item: dict[str, Any]) -> bytes:
        self.response["output"][index] = item
        return self.event("response.output_item.done", output_index=index, item=item)

    # --- fusion -------------------------------------------------------------------------

    def fusion_started(self, run: str, item: dict[str, Any]) -> list[bytes]:
        out = self.close_text()
        index, added = self._add(item)
        self._fusion[run] = (index, item)
        return [*out, added]

    def fusion_progress(self, run: str, kind: str, data: Mapping[str, Any]) -> list[bytes]:
        """A contract progress event as the hosted `response.<type>` event."""
        if kind not in FUSION_EVENT_FIELDS or run not in self._fusion:
            return []
        index, item = self._fusion[run]
        fields = {
            name: data[name]
            for name in FUSION_EVENT_FIELDS[kind]
            if name in data and data[name] is not None
        }
        return [self.event(f"response.{kind}", item_id=item["id"], output_index=index, **fields)]

    def fusion_finished(self, run: str, item: dict[str, Any]) -> list[bytes]:
        if run not in self._fusion:
            index, added = self._add(item)
            return [added, self._done(index, item)]
        index, _ = self._fusion.pop(run)
        return [self._done(index, item)]

    def close_fusion(self) -> list[bytes]:
        """Fusion items whose run never reported its end: done, as incomplete."""
        out = []
        for run in list(self._fusion):
            index, item = self._fusion.pop(run)
            out.append(self._done(index, {**item, "status": "incomplete"}))
        return out

    def fusion_item(self, item: dict[str, Any]) -> list[bytes]:
        """A fusion call that never ran (capped): added and done at once."""
        out = self.close_text()
        index, added = self._add(item)
        return [*out, added, self._done(index, item)]

    # --- the answer ---------------------------------------------------------------------

    def text(self, delta: str) -> list[bytes]:
        out: list[bytes] = []
        if self._text_item is None:
            item = message_item("", status="in_progress")
            index, added = self._add(item)
            self._text_item, self._text = item, []
            out += [
                added,
                self.event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=output_text(""),
                ),
            ]
        self._text.append(delta)
        out.append(
            self.event(
                "response.output_text.delta",
                item_id=self._text_item["id"],
                output_index=self._text_index,
                content_index=0,
                delta=delta,
                logprobs=[],
            )
        )
        return out

    @property
    def _text_index(self) -> int:
        return next(i for i, o in enumerate(self.response["output"]) if o is self._text_item)

    def close_text(self) -> list[bytes]:
        if self._text_item is None:
            return []
        item, index, text = self._text_item, self._text_index, "".join(self._text)
        self._text_item = None
        done = message_item(text, ident=item["id"])
        common = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return [
            self.event("response.output_text.done", **common, text=text, logprobs=[]),
            self.event("response.content_part.done", **common, part=output_text(text)),
            self._done(index, done),
        ]

    def function_call(self, item: dict[str, Any]) -> list[bytes]:
        index, added = self._add(dict(item, arguments="", status="in_progress"))
        common = {"item_id": item["id"], "output_index": index}
        return [
            added,
            self.event("response.function_call_arguments.delta", **common, delta=item["arguments"]),
            self.event(
                "response.function_call_arguments.done",
                **common,
                name=item["name"],
                arguments=item["arguments"],
            ),
            self._done(index, item),
        ]

    def completed(self) -> bytes:
        kind = (
            "response.incomplete"
            if self.response["status"] == "incomplete"
            else ("response.completed")
        )
        return self.event(kind, response=self.response)

    def failed(self, error: GatewayError) -> list[bytes]:
        """An `error` event, then `response.failed` with the error on the response."""
        code = error_code(error)
        self.response["status"] = "failed"
        self.response["error"] = {"code": code, "message": error.message}
        return [
            self.event("error", code=code, message=error.message, param=None),
            self.event("response.failed", response=self.response),
        ]
