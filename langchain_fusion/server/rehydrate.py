"""A fusion result on the wire and back: how a client carries an earlier deliberation into
its next request, so that the outer model sees it and it does not run again in that turn.

Chat Completions carries each fusion call as a `reasoning.server_tool_call` record in the
assistant message's `reasoning_details` (as the hosted API does); the Responses API as an
`openrouter:fusion` output item. Sent back, either becomes the fusion call and its tool
result in the transcript, just before the assistant turn that used them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.messages.tool import tool_call
from pydantic import ValidationError

from langchain_fusion.contract.parameters import SERVER_TOOL_TYPE
from langchain_fusion.contract.result import FusionResult
from langchain_fusion.graph.prompts import FUSION_TOOL_NAME, format_tool_content
from langchain_fusion.server.meter import FusionCall

RECORD_TYPE = "reasoning.server_tool_call"
ITEM_PREFIX = "st_fusion_"
# What the Responses item and the record carry of the result: the contract's fields, not
# our per-request extras (usage, degraded), which the response reports elsewhere.
_CONTRACT_FIELDS = ("status", "analysis", "responses", "failed_models", "sources", "failure_reason")


def contract_json(result: FusionResult) -> dict[str, Any]:
    """The result's contract fields; a failure with no better code is `unexpected_error`,
    and a success has no `failure_reason` key (hosted: a string or no field)."""
    data = result.model_dump(mode="json")
    body = {name: data[name] for name in _CONTRACT_FIELDS if name in data}
    if result.status == "error":
        body["failure_reason"] = body.get("failure_reason") or "unexpected_error"
    else:
        body.pop("failure_reason", None)
    return body


# --- Chat Completions: reasoning_details ---------------------------------------------------


def server_tool_record(call: FusionCall, index: int) -> dict[str, Any]:
    """The `reasoning.server_tool_call` record of one fusion call."""
    result = call.outcome()
    body = contract_json(result)
    if result.failure_detail:
        body["error"] = result.failure_detail
    return {
        "type": RECORD_TYPE,
        "id": None,
        "format": "unknown",
        "index": index,
        "tool_name": SERVER_TOOL_TYPE,
        "tool_call_id": call.call_id,
        "arguments": json.dumps({"prompt": call.prompt}),
        "result": json.dumps(body),
    }


def is_fusion_record(detail: Any) -> bool:
    return (
        isinstance(detail, dict)
        and detail.get("type") == RECORD_TYPE
        and detail.get("tool_name") == SERVER_TOOL_TYPE
    )


def from_record(detail: dict[str, Any], position: str, fallback_prompt: str) -> list[BaseMessage]:
    """The fusion call and its result, from a record a client sent back."""
    call_id = str(detail.get("tool_call_id") or f"call_fusion_{position}")
    try:
        arguments = json.loads(detail.get("arguments") or "{}")
    except (TypeError, ValueError):
        arguments = {}
    prompt = arguments.get("prompt") if isinstance(arguments, dict) else None
    raw = detail.get("result")
    return _pair(call_id, str(prompt or fallback_prompt), _result_text(raw))


# --- Responses: the openrouter:fusion output item -------------------------------------------


def item_id(call_id: str) -> str:
    return ITEM_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "_", call_id)


def from_item(item: dict[str, Any], fallback_prompt: str) -> list[BaseMessage]:
    """The fusion call and its result, from an output item a client sent back."""
    call_id = str(item.get("id") or "st_fusion_input")
    fields = {k: v for k, v in item.items() if k in _CONTRACT_FIELDS and v is not None}
    # The item's `status` is the call's (completed); the result's is said by `error`.
    fields["status"] = "error" if item.get("error") else "ok"
    if item.get("error"):
        fields["failure_detail"] = item["error"]
    return _pair(call_id, fallback_prompt, _result_text(fields))


# --- both ---------------------------------------------------------------------------------


def _result_text(raw: Any) -> str:
    """What the outer model reads for a result: as it read it the first time when the
    result is one of ours, else the result as it came."""
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        result = FusionResult.model_validate(data)
    except (TypeError, ValueError, ValidationError):
        return raw if isinstance(raw, str) else json.dumps(raw)
    return format_tool_content(result)


def _pair(call_id: str, prompt: str, content: str) -> list[BaseMessage]:
    call = tool_call(name=FUSION_TOOL_NAME, args={"prompt": prompt}, id=call_id)
    return [
        AIMessage(content="", tool_calls=[call]),
        ToolMessage(content, tool_call_id=call_id, name=FUSION_TOOL_NAME),
    ]
