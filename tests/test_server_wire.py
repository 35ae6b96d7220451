"""The gateway's response side as the hosted API has it since August: one concrete model
name per stream (from the first byte), usage always last, routing metadata on request,
usage cost fields, and errors with `availability` (every byte also checked against the
hosted openapi.yaml by `wire_schema`)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_server_support import (
    CONCRETE,
    FORCE_FUSION,
    OUTER,
    PANEL,
    QUALITY_JUDGE,
    QUESTION,
    Gateway,
    error_of,
    healthy,
    running_gateway,
)

from langchain_fusion.server.meter import FusionCall
from langchain_fusion.server.wire.items import fusion_item
from langchain_fusion.testing import ModelScript

OPUS = "anthropic/claude-opus-4.5"
PANEL_A = "panel-a-2025"
FUSION_TOOL = {"type": "openrouter:fusion", "parameters": {"analysis_models": PANEL}}
METADATA = {"X-OpenRouter-Metadata": "enabled"}


@pytest.fixture(scope="module")
def shared() -> Iterator[Gateway]:
    yield from running_gateway()


@pytest.fixture
def gateway(shared: Gateway) -> Gateway:
    shared.reset()
    return shared


@contextlib.contextmanager
def fresh_gateway() -> Iterator[Gateway]:
    """A gateway that has learned no concrete model name yet."""
    gateways = running_gateway()
    gateway = next(gateways)
    try:
        gateway.reset()
        yield gateway
    finally:
        gateways.close()


def _events(gateway: Gateway, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream(
        "POST", f"{gateway.url}{path}", json={**body, "stream": True}, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    return [json.loads(line[6:]) for line in lines if line != "data: [DONE]"]


# --- the concrete model, one name per stream ---------------------------------------------


def test_a_chat_stream_names_the_concrete_model_from_its_first_chunk() -> None:
    with fresh_gateway() as gateway:  # nothing learned: the first chunk must wait for it
        chunks = _events(
            gateway,
            "/chat/completions",
            {
                "model": OUTER,
                "messages": [{"role": "user", "content": QUESTION}],
                "tools": [FUSION_TOOL],
                "tool_choice": FORCE_FUSION,
            },
        )
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [chunk["model"] for chunk in chunks] == [CONCRETE] * len(chunks)
    assert all("system_fingerprint" not in chunk for chunk in chunks)
    usage = chunks[-1]  # as hosted: usage last, though include_usage was not sent
    assert usage["choices"] == []
    assert usage["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("path", ["/chat/completions", "/messages"])
def test_an_outer_model_that_answers_at_once_is_named_concretely_from_the_first_byte(
    path: str,
) -> None:
    body = {
        "model": OUTER,
        "max_tokens": 300,
        "messages": [{"role": "user", "content": QUESTION}],
        "plugins": [{"id": "fusion", "analysis_models": PANEL}],
    }
    with fresh_gateway() as gateway:  # it streams its answer without calling fusion
        events = _events(gateway, path, body)
        assert gateway.models_called() == {OUTER}
    if path == "/messages":
        assert events[0]["type"] == "message_start"
        assert events[0]["message"]["model"] == CONCRETE
    else:
        assert [chunk["model"] for chunk in events] == [CONCRETE] * len(events)


def test_a_responses_stream_names_each_model_once_concretely() -> None:
    body = {"model": "openrouter/fusion", "input": QUESTION, "tool_choice": "required"}
    with fresh_gateway() as gateway:
        gateway.script(QUALITY_JUDGE, healthy(response_model=OPUS))
        gateway.script(PANEL[0], healthy(response_model=PANEL_A))
        # A forced deliberation runs before the outer model has named itself: the first
        # stream is not held back for names; each keeps one name for the whole stream.
        first = _events(gateway, "/responses", body)
        second = _events(gateway, "/responses", body)
    for events in (first, second):
        snapshots = [e["response"] for e in events if "response" in e]
        assert len({s["model"] for s in snapshots}) == 1  # created, in_progress, completed
        for snapshot in snapshots:
            assert {"frequency_penalty", "presence_penalty", "completed_at"} <= set(snapshot)
        panel = [e for e in events if e["type"].startswith("response.fusion_call.panel.")]
        assert {"added", "delta", "completed"} <= {e["type"].rsplit(".", 1)[-1] for e in panel}
        for model in PANEL:  # one name per panelist, from panel.added to panel.completed
            assert len({e["model"] for e in panel if e["model"].startswith(model)}) == 1
    # Learned from the first request: the second names every model concretely.
    snapshots = [e["response"] for e in second if "response" in e]
    assert {s["model"] for s in snapshots} == {OPUS}
    panel = [e for e in second if e["type"].startswith("response.fusion_call.panel.")]
    assert {e["model"] for e in panel} == {PANEL_A, PANEL[1]}
    assert next(e for e in panel if e["model"] == PANEL_A)["type"].endswith("panel.added")
    (analysis,) = [e for e in second if e["type"].endswith("analysis.in_progress")]
    assert analysis["analyst_model"] == analysis["judge_model"] == OPUS


def test_the_analyst_is_named_concretely_though_it_answers_after_its_event() -> None:
    with fresh_gateway() as gateway:  # an analyst that is not the outer model
        gateway.script(QUALITY_JUDGE, healthy(response_model=OPUS))
        # The outer model's name is learned first, so the stream starts before the analyst
        # has answered: its event must wait for the analyst's first token.
        learn = {"model": OUTER, "messages": [{"role": "user", "content": "hi"}]}
        gateway.post("/chat/completions", {**learn, "tools": [FUSION_TOOL], "max_tool_calls": 0})
        events = _events(
            gateway,
            "/responses",
            {
                "model": OUTER,
                "input": QUESTION,
                "plugins": [{"id": "fusion", "analysis_models": PANEL, "model": QUALITY_JUDGE}],
                "tool_choice": "required",
            },
        )
    kinds = [e["type"] for e in events]
    (analysis,) = [e for e in events if e["type"].endswith("analysis.in_progress")]
    assert analysis["analyst_model"] == analysis["judge_model"] == OPUS
    assert kinds.index(analysis["type"]) < kinds.index("response.fusion_call.analysis.completed")
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def test_a_second_request_names_the_concrete_model_before_any_upstream_byte(
    gateway: Gateway,
) -> None:
    body = {"model": OUTER, "messages": [{"role": "user", "content": "hi"}], "tools": [FUSION_TOOL]}
    _events(gateway, "/chat/completions", body)  # learns OUTER -> CONCRETE
    gateway.script(OUTER, ModelScript(hang=True))  # no upstream byte at all
    with httpx.stream(
        "POST", f"{gateway.url}/responses", json={**_responses(body), "stream": True}, timeout=30
    ) as response:
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
    assert json.loads(first[6:])["response"]["model"] == CONCRETE


def _responses(chat: dict[str, Any]) -> dict[str, Any]:
    return {"model": chat["model"], "input": chat["messages"][0]["content"], "tools": chat["tools"]}


# --- metadata and usage ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/chat/completions", "/responses"])
def test_the_metadata_header_adds_the_fusion_routing_strategy(gateway: Gateway, path: str) -> None:
    body: dict[str, Any] = {"model": "openrouter/fusion", "tool_choice": "required"}
    if path == "/responses":
        body["input"] = QUESTION
    else:
        body["messages"] = [{"role": "user", "content": QUESTION}]
    asked = gateway.post(path, body, headers=METADATA).json()
    metadata = asked["openrouter_metadata"]
    assert metadata["strategy"] == metadata["routing"]["strategy"] == "fusion"
    assert metadata["requested"] == "openrouter/fusion"
    assert "openrouter_metadata" not in gateway.post(path, body).json()


def test_usage_reports_cost_and_the_server_tool_calls(gateway: Gateway) -> None:
    body = {
        "model": "openrouter/fusion",
        "messages": [{"role": "user", "content": QUESTION}],
        "tool_choice": "required",
    }
    usage = gateway.post("/chat/completions", body).json()["usage"]
    assert usage["cost"] > 0
    assert usage["server_tool_use_details"] == {"tool_calls_requested": 1, "tool_calls_executed": 1}
    events = _events(
        gateway, "/responses", {**_responses({**body, "tools": []}), "tool_choice": "required"}
    )
    final = events[-1]["response"]["usage"]
    assert final["server_tool_use_details"]["tool_calls_executed"] == 1


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/chat/completions", "/responses"])
def test_an_exhausted_upstream_says_so_in_availability(gateway: Gateway, path: str) -> None:
    gateway.script(QUALITY_JUDGE, ModelScript(status_code=429, retry_after=7))
    body: dict[str, Any] = {"model": "openrouter/fusion"}
    body |= (
        {"input": "hi"}
        if path == "/responses"
        else {"messages": [{"role": "user", "content": "hi"}]}
    )
    response = gateway.post(path, body)
    assert response.status_code == 429
    availability = error_of(response)["availability"]
    assert availability == {
        "code": "capacity_exhausted",
        "retryable": True,
        "retry_after": 7,
        "requested_models": availability["requested_models"],
        "docs_url": "https://openrouter.ai/docs/errors#capacity_exhausted",
    }
    assert response.headers["retry-after"] == "7"
    assert QUALITY_JUDGE in availability["requested_models"]
    assert set(PANEL) <= set(availability["requested_models"])


def test_a_failed_chat_stream_ends_with_a_hosted_error_chunk(gateway: Gateway) -> None:
    gateway.script(QUALITY_JUDGE, ModelScript(status_code=429))
    chunks = _events(
        gateway,
        "/chat/completions",
        {"model": "openrouter/fusion", "messages": [{"role": "user", "content": "hi"}]},
    )
    error = chunks[-1]["error"]
    assert error["code"] == 429
    assert error["metadata"]["error_type"] == "rate_limit_exceeded"
    assert error["availability"]["code"] == "capacity_exhausted"
    assert chunks[-1]["choices"][0]["finish_reason"] == "error"


def test_an_unknown_model_is_a_400_naming_it(gateway: Gateway) -> None:
    # As OpenAI and vLLM word it.
    gateway.script(
        OUTER, ModelScript(status_code=404, error_message=f"The model `{OUTER}` does not exist.")
    )
    body = {"model": OUTER, "messages": [{"role": "user", "content": "hi"}], "tools": [FUSION_TOOL]}
    response = gateway.post("/chat/completions", body)
    assert response.status_code == 400
    availability = error_of(response)["availability"]
    assert availability["code"] == "model_not_found"
    assert availability["retryable"] is False
    assert OUTER in availability["requested_models"]


def test_a_failure_without_a_better_code_is_an_unexpected_error() -> None:
    item = fusion_item(FusionCall("call_1", "q", ran=True, error="the tool broke")).wire()
    assert item["failure_reason"] == "unexpected_error"
    assert item["error"] == "the tool broke"
    ok = fusion_item(FusionCall("call_2", "q", ran=True, result=None))
    assert ok.wire()["failure_reason"] == "cancelled"


# --- the outer loop's controls -------------------------------------------------------------


def _ask(path: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": OUTER, "tools": [FUSION_TOOL], **fields}
    if path == "/responses":
        return {**body, "input": QUESTION}
    return {**body, "messages": [{"role": "user", "content": QUESTION}]}


@pytest.mark.parametrize("path", ["/chat/completions", "/responses"])
def test_max_tool_calls_zero_offers_no_server_tool(gateway: Gateway, path: str) -> None:
    response = gateway.post(path, _ask(path, max_tool_calls=0, tool_choice="required"))
    assert response.status_code == 200, response.text
    assert gateway.requests(*PANEL) == []
    (outer,) = gateway.requests(OUTER)
    assert "fusion" not in json.dumps(outer.body.get("tools") or [])


@pytest.mark.parametrize("path", ["/chat/completions", "/responses"])
def test_stop_conditions_are_checked_and_let_the_pending_fusion_call_run(
    gateway: Gateway, path: str
) -> None:
    conditions = [
        {"type": "step_count_is", "step_count": 1},
        {"type": "max_cost", "max_cost_in_dollars": 0.5},
        {"type": "max_tokens_used", "max_tokens": 10_000},
        {"type": "has_tool_call", "tool_name": "get_weather"},
        {"type": "finish_reason_is", "reason": "stop"},
    ]
    body = _ask(path, stop_server_tools_when=conditions, max_tool_calls=0)
    forced = FORCE_FUSION if path == "/chat/completions" else {"type": "function", "name": "fusion"}
    response = gateway.post(path, {**body, "tool_choice": forced})
    assert response.status_code == 200, response.text
    assert {r.model for r in gateway.requests(*PANEL)} == set(PANEL)  # it ran, once
    assert len(gateway.requests(*PANEL)) == len(PANEL)


@pytest.mark.parametrize("path", ["/chat/completions", "/responses"])
@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"max_tool_calls": 31}, "max_tool_calls"),
        ({"stop_server_tools_when": []}, "stop_server_tools_when"),
        ({"stop_server_tools_when": [{"type": "max_cost"}]}, "max_cost_in_dollars"),
        ({"stop_server_tools_when": [{"type": "step_count"}]}, "stop_server_tools_when"),
    ],
)
def test_malformed_loop_controls_are_a_400_before_any_upstream_call(
    gateway: Gateway, path: str, fields: dict[str, Any], named: str
) -> None:
    response = gateway.post(path, _ask(path, **fields))
    assert response.status_code == 400
    assert named in error_of(response)["message"]
    assert gateway.upstream.requests == []


def test_cost_details_add_up_to_the_cost_only_when_every_call_was_priced() -> None:
    from langchain_core.messages import AIMessage

    from langchain_fusion.limits import ModelPrice
    from langchain_fusion.server.meter import RunRecorder, Usage
    from langchain_fusion.server.wire.usage import hosted_extras

    def answered(cost: float | None = None) -> AIMessage:
        usage = {"input_tokens": 100, "output_tokens": 10, "total_tokens": 110}
        metadata = {} if cost is None else {"cost": cost}
        return AIMessage("x", usage_metadata=usage, response_metadata=metadata)  # type: ignore[arg-type]

    priced = RunRecorder({"m": ModelPrice(prompt=1e-6, completion=4e-6)})
    priced._count("m", answered())
    spend = priced.spend()
    extras = hosted_extras(Usage(cost=spend.usd), priced)
    assert extras["cost_details"] == {
        "upstream_inference_cost": pytest.approx(1.4e-4),
        "upstream_inference_prompt_cost": pytest.approx(1e-4),
        "upstream_inference_completions_cost": pytest.approx(4e-5),
    }
    assert extras["cost"] == pytest.approx(1.4e-4)
    reported = RunRecorder({"m": ModelPrice(prompt=1e-6, completion=4e-6)})
    reported._count("m", answered(cost=0.5))  # the provider's split is not ours to guess
    assert "cost_details" not in hosted_extras(Usage(cost=0.5), reported)


def test_an_upstream_400_for_an_unknown_model_is_model_not_found() -> None:
    import httpx as client

    from langchain_fusion.server.errors import GatewayError
    from langchain_fusion.server.wire.availability import UpstreamError, availability
    from langchain_fusion.server.wire.errors import with_availability

    def upstream(status: int, text: str) -> client.HTTPStatusError:
        request = client.Request("POST", "http://upstream/v1/chat/completions")
        response = client.Response(status, request=request, headers={"retry-after": "3"})
        return client.HTTPStatusError(text, request=request, response=response)

    unknown = upstream(400, "vendor/nope is not a valid model ID")
    failure = with_availability(GatewayError(502, "failed"), unknown, ["vendor/nope"])
    assert failure.status == 400
    assert failure.availability == {
        "code": "model_not_found",
        "retryable": False,
        "requested_models": ["vendor/nope"],
        "docs_url": "https://openrouter.ai/docs/errors#model_not_found",
    }
    assert availability(UpstreamError.of(upstream(400, "messages: too long")), ["m"]) is None
    limited = availability(UpstreamError.of(upstream(503, "overloaded")), ["m", "m"])
    assert limited is not None
    assert limited.wire() == {
        "code": "temporarily_unavailable",
        "retryable": True,
        "retry_after": 3,
        "requested_models": ["m"],
        "docs_url": "https://openrouter.ai/docs/errors#temporarily_unavailable",
    }
