"""Upstream failures in the hosted `error.availability` shape: each of the eleven codes
from the condition an upstream reports (its status and its own words, or its own
`availability`), with the code's HTTP status, on every route, streamed and not. Every
object is also checked against the hosted type by `wire_schema` (code, status, fields)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_server_support import OUTER, PANEL, Gateway, error_of, running_gateway

from langchain_fusion.testing import ModelScript

PLAIN = "vendor/plain-model"
"""A model asked for without fusion: the gateway relays it."""
REPORTED = {
    "code": "constraint_filtered",
    "retryable": False,
    "requested_models": ["inner/slug"],
    "excluded_by": ["max_price"],
    "fallback_models": ["vendor/cheaper"],
    "constraint": {"field": "max_price", "detail": "every endpoint is above max_price"},
    "docs_url": "https://openrouter.ai/docs/errors#constraint_filtered",
}
"""An availability object as OpenRouter itself sends it (the upstream of a gateway)."""

# (upstream status, its words or None for the scripted wording, its own fields),
# then the code, its HTTP status, what excluded the model, the constraint's field.
CASES: dict[str, tuple[Any, ...]] = {
    "model_not_found": (400, "acme/fake-1.0 is not a valid model ID", None, 400, None, None),
    "openai_model_not_found": (404, "The model `x` does not exist.", None, 400, None, None),
    "wrong_endpoint": (
        400,
        "x is an embedding model, not a chat model",
        None,
        400,
        None,
        "endpoint",
    ),
    "no_endpoints": (404, "No endpoints found for x.", None, 404, None, None),
    "model_deprecated": (404, "Quasar Alpha has been removed.", None, 404, None, None),
    "model_unavailable_upstream": (404, None, None, 404, None, None),
    "capacity_exhausted": (429, None, None, 429, None, None),
    "temporarily_unavailable": (503, None, None, 503, None, None),
    "region_restricted": (
        403,
        "This model is not available in your region.",
        None,
        403,
        "geo",
        None,
    ),
    "privacy_restricted": (
        404,
        "No endpoints for x match your data policy (zero data retention).",
        None,
        404,
        "data_policy:zdr",
        None,
    ),
    "constraint_filtered": (
        404,
        "No endpoints found that support tool use.",
        None,
        404,
        "require_parameters",
        "require_parameters",
    ),
    "free_variant_ended": (404, "x:free: the free promotion has ended.", None, 404, None, None),
    "reported": (404, "no endpoint", {"availability": REPORTED}, 404, "max_price", "max_price"),
}


def _code(case: str) -> str:
    return {"openai_model_not_found": "model_not_found", "reported": "constraint_filtered"}.get(
        case, case
    )


@pytest.fixture(scope="module")
def shared() -> Iterator[Gateway]:
    yield from running_gateway()


@pytest.fixture
def gateway(shared: Gateway) -> Gateway:
    shared.reset()
    return shared


def _fail(gateway: Gateway, model: str, case: str) -> None:
    status, words, fields = CASES[case][:3]
    script = ModelScript(status_code=status, error_message=words, error_fields=fields)
    if status in (429, 503):
        script = ModelScript(status_code=status, retry_after=7)
    gateway.script(model, script)


def _body(path: str, model: str, *, fusion: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": 100}
    if fusion:
        body["plugins"] = [{"id": "fusion", "analysis_models": PANEL}]
    if path == "/responses":
        body["max_output_tokens"] = body.pop("max_tokens")
        return {**body, "input": "hi"}
    return {**body, "messages": [{"role": "user", "content": "hi"}]}


def _check(case: str, found: dict[str, Any], requested: str) -> None:
    _, _, _, _, excluded, constraint = CASES[case]
    code = _code(case)
    assert found["code"] == code
    assert found["retryable"] is (code in ("capacity_exhausted", "temporarily_unavailable"))
    assert requested in found["requested_models"]
    assert found["docs_url"].endswith(f"#{code}")
    assert found.get("excluded_by") == ([excluded] if excluded else None)
    assert (found.get("constraint") or {}).get("field") == constraint
    if code in ("capacity_exhausted", "temporarily_unavailable"):
        assert found["retry_after"] == 7
    if case == "reported":  # the upstream's suggestion kept, for the models asked here
        assert found["fallback_models"] == ["vendor/cheaper"]
        assert "inner/slug" not in found["requested_models"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_upstream_condition_has_its_code_and_status(gateway: Gateway, case: str) -> None:
    _fail(gateway, OUTER, case)
    response = gateway.post("/chat/completions", _body("/chat/completions", OUTER))
    assert response.status_code == CASES[case][3]
    _check(case, error_of(response)["availability"], OUTER)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_condition_ends_a_chat_stream_with_its_availability(
    gateway: Gateway, case: str
) -> None:
    _fail(gateway, OUTER, case)
    body = {**_body("/chat/completions", OUTER), "stream": True}
    with httpx.stream("POST", f"{gateway.url}/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: {")]
    error = json.loads(lines[-1])["error"]
    assert error["code"] == CASES[case][3]
    _check(case, error["availability"], OUTER)


@pytest.mark.parametrize("case", ["model_not_found", "capacity_exhausted", "privacy_restricted"])
@pytest.mark.parametrize("stream", [False, True])
def test_responses_errors_carry_availability(gateway: Gateway, case: str, stream: bool) -> None:
    _fail(gateway, OUTER, case)
    body = {**_body("/responses", OUTER), "stream": stream}
    if not stream:
        response = gateway.post("/responses", body)
        assert response.status_code == CASES[case][3]
        _check(case, error_of(response)["availability"], OUTER)
        return
    with httpx.stream("POST", f"{gateway.url}/responses", json=body, timeout=30) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    (error,) = [e for e in events if e["type"] == "error"]
    _check(case, error["availability"], OUTER)
    assert events[-1]["type"] == "response.failed"


@pytest.mark.parametrize("case", ["model_not_found", "capacity_exhausted", "region_restricted"])
@pytest.mark.parametrize("stream", [False, True])
def test_messages_errors_carry_availability(gateway: Gateway, case: str, stream: bool) -> None:
    _fail(gateway, OUTER, case)
    body = {**_body("/messages", OUTER), "stream": stream}
    if not stream:
        response = gateway.post("/messages", body)
        assert response.status_code == CASES[case][3]
        error = response.json()["error"]
    else:
        with httpx.stream("POST", f"{gateway.url}/messages", json=body, timeout=30) as r:
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
        error = events[-1]["error"]
    _check(case, error["availability"], OUTER)


@pytest.mark.parametrize(
    "case", ["model_not_found", "no_endpoints", "capacity_exhausted", "reported"]
)
@pytest.mark.parametrize("stream", [False, True])
def test_a_relayed_plain_request_carries_availability(
    gateway: Gateway, case: str, stream: bool
) -> None:
    _fail(gateway, PLAIN, case)
    body = {**_body("/chat/completions", PLAIN, fusion=False), "stream": stream}
    response = gateway.post("/chat/completions", body)
    assert response.status_code == CASES[case][3]
    _check(case, error_of(response)["availability"], PLAIN)


def test_failures_that_are_not_about_availability_have_none(gateway: Gateway) -> None:
    gateway.script(OUTER, ModelScript(status_code=402, error_message="Insufficient credits."))
    response = gateway.post("/chat/completions", _body("/chat/completions", OUTER))
    assert response.status_code == 402
    assert "availability" not in error_of(response)
    gateway.script(OUTER, ModelScript(status_code=400, error_message="messages: too long"))
    response = gateway.post("/chat/completions", _body("/chat/completions", OUTER))
    assert "availability" not in error_of(response)
    refused = gateway.post("/chat/completions", {"model": OUTER, "messages": []})
    assert refused.status_code == 400  # the gateway's own refusal, before any call
    assert "availability" not in error_of(refused)
