"""Anthropic's Messages API on the wire: the message, its content blocks, its stream
events and its errors, as the hosted `/messages` schema has them (Anthropic's shapes)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from langchain_core.messages import BaseMessage
from sse_starlette import ServerSentEvent

from langchain_fusion.graph.prompts import FUSION_TOOL_NAME
from langchain_fusion.server.errors import GatewayError
from langchain_fusion.server.meter import Usage
from langchain_fusion.server.wire.errors import error_type_of

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
"""HTTP status → Anthropic's error `type` (anything else is `api_error`)."""


def error_body(failure: GatewayError) -> dict[str, Any]:
    """`{"type": "error", "error": {"type", "message", "error_type", "availability"?},
    "request_id"}`."""
    error: dict[str, Any] = {
        "type": ERROR_TYPES.get(failure.status, "api_error"),
        "message": failure.message,
        "error_type": error_type_of(failure),
    }
    if failure.availability is not None:  # where the other routes carry it: on the error
        error["availability"] = failure.availability
    return {"type": "error", "error": error, "request_id": None}


def stop_reason(message: BaseMessage | None, has_tool_use: bool) -> str:
    if has_tool_use:
        return "tool_use"
    reason = message.response_metadata.get("finish_reason") if message is not None else None
    return "max_tokens" if reason == "length" else "end_turn"


def tool_uses(message: BaseMessage | None) -> list[dict[str, Any]]:
    """The caller's tool calls as `tool_use` blocks (the fusion tool ran on the server)."""
    return [
        {
            "type": "tool_use",
            "id": call["id"] or f"toolu_{uuid.uuid4().hex[:24]}",
            "caller": {"type": "direct"},
            "name": call["name"],
            "input": call["args"],
        }
        for call in getattr(message, "tool_calls", None) or []
        if call["name"] != FUSION_TOOL_NAME
    ]


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "citations": None}


def usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": usage.cached_tokens or None,
        "cache_creation": None,
        "inference_geo": None,
        "server_tool_use": None,
        "service_tier": None,
        "output_tokens_details": None,
        **({"cost": round(usage.cost, 10)} if usage.cost is not None else {}),
    }


def message(
    ident: str, model: str, content: list[dict[str, Any]], stop: str | None, used: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": ident,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "container": None,
        "stop_reason": stop,
        "stop_details": None,
        "stop_sequence": None,
        "usage": used,
    }


def event(kind: str, **fields: Any) -> ServerSentEvent:
    """One stream event: Anthropic names it in `event:` and in the data's `type`."""
    return ServerSentEvent(event=kind, data=json.dumps({"type": kind, **fields}))
