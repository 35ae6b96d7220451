"""The `openrouter:fusion` output item of one fusion call, typed.

A failed run carries `failure_reason` (`unexpected_error` when no better code says why)
and `error`; a successful one neither, never as `null`.
"""

from __future__ import annotations

from langchain_fusion.server.meter import FusionCall
from langchain_fusion.server.rehydrate import contract_json, item_id
from langchain_fusion.server.wire.responses import FusionItem, ItemStatus

UNEXPECTED = "unexpected_error"


def fusion_item(call: FusionCall, *, status: ItemStatus = "completed") -> FusionItem:
    result = call.outcome()
    data = contract_json(result)
    data.pop("status", None)  # the result's ok/error: the item's status is the call's
    if not data.get("sources"):
        data.pop("sources", None)  # hosted: present when a model cited a source
    if result.status == "error":
        data["failure_reason"] = result.failure_reason or UNEXPECTED
        data["error"] = result.failure_detail or result.failure_reason or "fusion failed"
    else:
        data.pop("failure_reason", None)
    return FusionItem.model_validate({**data, "id": item_id(call.call_id), "status": status})


def pending_item(call_id: str) -> FusionItem:
    """The item as `response.output_item.added` announces it."""
    return FusionItem(id=item_id(call_id), status="in_progress")
