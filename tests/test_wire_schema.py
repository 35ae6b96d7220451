"""The schema check itself: it refuses what the hosted SDKs refuse, and passes the
document's own examples (so a failing server test is the gateway's fault, not the check's)."""

from __future__ import annotations

import json
from typing import Any

import wire_schema

CHUNK: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "openai/gpt-4o",
    "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
}
RESPONSE: dict[str, Any] = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1,
    "completed_at": 2,
    "status": "completed",
    "model": "openai/gpt-4o",
    "output": [],
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "metadata": None,
    "parallel_tool_calls": True,
    "temperature": None,
    "top_p": None,
    "frequency_penalty": None,
    "presence_penalty": None,
    "max_output_tokens": None,
    "tool_choice": "auto",
    "tools": [],
}
FUSION_ITEM = {"type": "openrouter:fusion", "id": "st_fusion_1", "status": "completed"}


def _chat_event(chunk: dict[str, Any]) -> list[str]:
    return wire_schema.check_event("/v1/chat/completions", None, json.dumps(chunk))


def _responses_event(event: dict[str, Any]) -> list[str]:
    return wire_schema.check_event("/v1/responses", event["type"], json.dumps(event))


def test_a_chunk_with_a_null_system_fingerprint_is_refused() -> None:
    assert _chat_event(CHUNK) == []
    assert _chat_event({**CHUNK, "system_fingerprint": "fp_1"}) == []
    found = _chat_event({**CHUNK, "system_fingerprint": None})
    assert found == ["chunk: data/system_fingerprint: None is not of type 'string'"]


def test_a_response_without_the_penalties_or_completed_at_is_refused() -> None:
    body = json.dumps(RESPONSE).encode()
    assert wire_schema.check_body("/v1/responses", "POST", 200, "application/json", body) == []
    for field in ("frequency_penalty", "presence_penalty", "completed_at"):
        partial = {k: v for k, v in RESPONSE.items() if k != field}
        event = {"type": "response.created", "sequence_number": 0, "response": partial}
        assert _responses_event(event) == [
            f"response.created: data/response: '{field}' is a required property"
        ]


def test_a_fusion_item_with_a_null_failure_reason_is_refused() -> None:
    event = {"type": "response.output_item.done", "sequence_number": 3, "output_index": 0}
    assert _responses_event({**event, "item": FUSION_ITEM}) == []
    found = _responses_event({**event, "item": {**FUSION_ITEM, "failure_reason": None}})
    assert found == [
        "response.output_item.done: data/item/failure_reason: None is not of type 'string'"
    ]


def test_unknown_event_types_and_mismatched_names_are_refused() -> None:
    event = {"type": "response.fusion_call.bogus", "sequence_number": 0}
    assert any("no event type" in p for p in _responses_event(event))
    named = {"type": "response.fusion_call.in_progress", "sequence_number": 0}
    named |= {"item_id": "st_fusion_1", "output_index": 0}
    assert _responses_event(named) == []
    found = wire_schema.check_event("/v1/responses", "response.created", json.dumps(named))
    assert any("is not the data's type" in p for p in found)


def test_error_bodies_need_an_integer_code() -> None:
    good = json.dumps({"error": {"code": 400, "message": "bad"}}).encode()
    bad = json.dumps({"error": {"code": "invalid_request", "message": "bad"}}).encode()
    assert (
        wire_schema.check_body("/v1/chat/completions", "POST", 400, "application/json", good) == []
    )
    assert wire_schema.check_body("/v1/chat/completions", "POST", 400, "application/json", bad)


def test_sse_framing_is_split_into_events_and_pings_are_skipped() -> None:
    events, rest = wire_schema.sse_events(": ping\n\nevent: a\ndata: {}\n\ndata: [DONE]\n\ndata: {")
    assert events == [("a", "{}"), (None, "[DONE]")]
    assert rest == "data: {"
