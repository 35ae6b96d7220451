"""The concrete model in every byte of a stream, on a model's first request to a fresh
gateway: the scripted upstream answers `~openai/gpt-latest` as `openai/gpt-5.1`.

Two ways to learn a name before the first byte that says it: the upstream's model list,
whose `~…-latest` rows name their target (`alias_target`, as OpenRouter's `GET /models`
has it), and, for a model the list does not resolve, its first streamed chunk (only the
bytes that name that model wait for it; the rest of the stream is not held back)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from test_server_support import CONCRETE, OUTER, QUESTION, Gateway, healthy, running_gateway

ALIAS, ALIAS_CONCRETE = "~openai/gpt-latest", "openai/gpt-5.1"
GEMINI, GEMINI_CONCRETE = "~google/gemini-pro-latest", "google/gemini-3-pro"
PANELIST, PANELIST_CONCRETE = "panel-b", "panel-b-2025"
"""A panelist the model list does not resolve (no `~`): named from its first chunk."""
PANEL = [GEMINI, PANELIST]


def _fresh() -> Any:
    gateways = running_gateway()
    gateway = next(gateways)
    gateway.reset()
    gateway.script(ALIAS, healthy(response_model=ALIAS_CONCRETE, tool_calls="auto"))
    gateway.script(GEMINI, healthy(response_model=GEMINI_CONCRETE))
    gateway.script(PANELIST, healthy(response_model=PANELIST_CONCRETE))
    return gateways, gateway


def _stream(gateway: Gateway, path: str, body: dict[str, Any]) -> list[tuple[float, Any]]:
    """Each event with when it arrived (`time.monotonic`, the upstream log's clock)."""
    out = []
    with httpx.stream(
        "POST", f"{gateway.url}{path}", json={**body, "stream": True}, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append((time.monotonic(), json.loads(line[6:])))
    return out


def _list_reads(gateway: Gateway) -> int:
    return sum(1 for r in gateway.upstream.requests if r.path.endswith("/models"))


TOOL = {"type": "openrouter:fusion", "parameters": {"analysis_models": PANEL}}


def test_a_first_chat_stream_names_the_listed_alias_concretely_in_every_chunk() -> None:
    gateways, gateway = _fresh()
    try:
        body = {"model": ALIAS, "messages": [{"role": "user", "content": QUESTION}]}
        chunks = [c for _, c in _stream(gateway, "/chat/completions", {**body, "tools": [TOOL]})]
        assert gateway.requests(GEMINI), "fusion ran"
        assert [c["model"] for c in chunks] == [ALIAS_CONCRETE] * len(chunks)
        assert chunks[-1]["usage"]["total_tokens"] > 0
        again = [c for _, c in _stream(gateway, "/chat/completions", body)]
        assert {c["model"] for c in again} == {ALIAS_CONCRETE}
        assert _list_reads(gateway) == 1  # read once, then remembered
    finally:
        gateways.close()


def test_a_model_the_list_does_not_resolve_is_named_from_its_first_chunk() -> None:
    gateways, gateway = _fresh()
    try:
        # Warm the schema check of the test harness (its first use builds validators for
        # seconds, holding the loop) on another model, which teaches nothing about OUTER.
        _stream(
            gateway,
            "/chat/completions",
            {"model": "warm/up", "messages": [{"role": "user", "content": "hi"}]},
        )
        # OUTER answers token by token, as OUTER-2025, at once (no fusion call).
        words = " ".join(f"word{i}" for i in range(20))
        gateway.script(OUTER, healthy(response_model=CONCRETE, reply=words, tokens_per_second=10))
        body = {
            "model": OUTER,
            "messages": [{"role": "user", "content": QUESTION}],
            "plugins": [{"id": "fusion", "analysis_models": PANEL}],
        }
        events = _stream(gateway, "/chat/completions", body)
        (outer,) = gateway.requests(OUTER)
        assert {c["model"] for _, c in events} == {CONCRETE}
        texts = [at for at, c in events if c["choices"] and c["choices"][0]["delta"].get("content")]
        # The name came with the first chunk: the answer streams while the model writes it
        # (held for its name until the call ended, it would arrive after `completed_at`).
        assert outer.completed_at is not None
        assert texts[0] < outer.completed_at
    finally:
        gateways.close()


@pytest.mark.parametrize("forced", [True, False])
def test_a_first_responses_stream_keeps_one_concrete_name_per_model(forced: bool) -> None:
    gateways, gateway = _fresh()
    try:
        body: dict[str, Any] = {"model": ALIAS, "input": QUESTION, "tools": [TOOL]}
        if forced:  # the deliberation runs before the outer model has said anything
            body["tool_choice"] = "required"
        events = [e for _, e in _stream(gateway, "/responses", body)]
    finally:
        gateways.close()
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    assert events[0]["response"]["model"] == events[-1]["response"]["model"] == ALIAS_CONCRETE
    panel = [e for e in events if e["type"].startswith("response.fusion_call.panel.")]
    kinds = {(e["type"].rsplit(".", 1)[-1], e["model"]) for e in panel}
    for model in (GEMINI_CONCRETE, PANELIST_CONCRETE):  # added, delta, completed pair up
        assert {("added", model), ("delta", model), ("completed", model)} <= kinds
    assert {e["model"] for e in panel} == {GEMINI_CONCRETE, PANELIST_CONCRETE}
    (analysis,) = [e for e in events if e["type"].endswith("analysis.in_progress")]
    assert analysis["analyst_model"] == ALIAS_CONCRETE  # the outer model analyses


def test_a_first_messages_stream_names_the_listed_alias_concretely() -> None:
    gateways, gateway = _fresh()
    try:
        body = {
            "model": ALIAS,
            "max_tokens": 300,
            "messages": [{"role": "user", "content": QUESTION}],
            "plugins": [{"id": "fusion", "analysis_models": PANEL}],
        }
        events = [e for _, e in _stream(gateway, "/messages", body)]
    finally:
        gateways.close()
    assert events[0]["type"] == "message_start"
    assert events[0]["message"]["model"] == ALIAS_CONCRETE
