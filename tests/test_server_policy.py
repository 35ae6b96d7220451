"""Every malformed, over-limit or disallowed request is refused before any upstream call
(the scripted backend's log stays empty), in the hosted error shape (`code` the status).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from test_server_support import (
    PANEL,
    QUESTION,
    WEATHER_TOOL,
    Gateway,
    error_of,
    running_gateway,
)

from langchain_fusion.limits import ModelPrice
from langchain_fusion.server import Policy

ALLOWED = ("panel-*", "outer/*", "~anthropic/*", "vendor/ok")
MAX_PANEL = 3
MAX_TOKENS = 200_000
PRICES = {
    model: ModelPrice(prompt=1e-6, completion=2e-6)
    for model in (*PANEL, "~anthropic/claude-opus-latest", "outer/priced")
}


@pytest.fixture(scope="module")
def policed() -> Iterator[Gateway]:
    policy = Policy(
        allow_models=ALLOWED,
        max_panel=MAX_PANEL,
        max_request_tokens=MAX_TOKENS,
        max_request_cost=0.5,
        prices=PRICES,
    )
    yield from running_gateway(policy=policy, max_body_bytes=20_000)


@pytest.fixture
def gateway(policed: Gateway) -> Gateway:
    policed.reset()
    return policed


def _fusion(outer: str = "outer/priced", **parameters: Any) -> dict[str, Any]:
    tool: dict[str, Any] = {"type": "openrouter:fusion"}
    if parameters:
        tool["parameters"] = parameters
    return {
        "model": outer,
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [tool],
        "max_tokens": 100,
    }


SMALL = {"max_completion_tokens": 100, "max_tool_calls": 1, "tools": []}


def test_a_request_within_the_policy_runs(gateway: Gateway) -> None:
    response = gateway.post("/chat/completions", {**_fusion(**SMALL), "tool_choice": "required"})
    assert response.status_code == 200, response.text
    assert {r.model for r in gateway.upstream.requests} == {*PANEL, "outer/priced"}


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        # The allow-list: the outer model, a panelist, the judge, a preset's expansion.
        (_fusion("evil/outer", **SMALL), 403, "'evil/outer'"),
        (_fusion(analysis_models=["panel-a", "evil/panelist"], **SMALL), 403, "'evil/panelist'"),
        (_fusion(model="evil/judge", **SMALL), 403, "'evil/judge'"),
        (
            _fusion(preset="general-budget", **SMALL),
            403,
            "'~google/gemini-flash-latest' (from preset 'general-budget')",
        ),
        (
            {"model": "evil/plain", "messages": [{"role": "user", "content": "hi"}]},
            403,
            "evil/plain",
        ),
        (
            {
                "model": "vendor/ok",
                "models": ["evil/fallback"],
                "messages": [{"role": "user", "content": "hi"}],
            },
            403,
            "evil/fallback",
        ),
        # The panel size.
        (
            _fusion(analysis_models=["panel-1", "panel-2", "panel-3", "panel-4"], **SMALL),
            403,
            "panel of 4",
        ),
        # The worst case: tokens (the hosted default of 16 000 per inner call), then cost.
        (_fusion(), 402, "--max-request-tokens=200000"),
        (
            {**_fusion(**SMALL), "max_tokens": 190_000},
            402,
            "--max-request-tokens",
        ),
        (_fusion(model="outer/unpriced", **SMALL), 402, "needs a price for every model"),
        (
            {
                "model": "vendor/ok",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 10,
            },
            402,
            "needs a price",
        ),
    ],
)
def test_a_refused_request_makes_no_upstream_call(
    gateway: Gateway, body: dict[str, Any], status: int, named: str
) -> None:
    response = gateway.post("/chat/completions", body)
    assert response.status_code == status, response.text
    error = error_of(response)
    assert named in error["message"]
    if status == 402 and "estimate" in (error["metadata"] or {}):
        assert error["metadata"]["estimate"]["total_tokens"] > 0
    assert gateway.upstream.requests == []


def test_the_budget_refusal_names_the_estimate(gateway: Gateway) -> None:
    response = gateway.post("/chat/completions", _fusion())
    metadata = error_of(response)["metadata"]
    estimate = metadata["estimate"]
    assert estimate["total_tokens"] > MAX_TOKENS
    assert estimate["total_tokens"] == estimate["input_tokens"] + estimate["output_tokens"]
    assert metadata["limit"] == {"max_request_tokens": MAX_TOKENS, "max_request_cost": 0.5}
    assert gateway.upstream.requests == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "'model' is required"),
        (_fusion(analysis_models=[f"panel-{i}" for i in range(9)]), "analysis_models"),
        (_fusion(analisys_models=["panel-a"]), "analisys_models: unknown field"),
        (_fusion(model="has space"), "analyst"),
        (_fusion(max_tool_calls=17), "an integer from 1 to 16"),
        (_fusion(cache_control={"type": "forever"}), "cache_control"),
        ({**_fusion(), "tools": [{"type": "openrouter:fusion"}] * 2}, "more than once"),
        (
            {**_fusion(), "plugins": [{"id": "fusion"}]},
            "either the openrouter:fusion tool or the fusion plugin",
        ),
        (
            {
                **_fusion(),
                "tools": [{"type": "openrouter:fusion"}, {"type": "openrouter:web_search"}],
            },
            "openrouter:web_search",
        ),
        (
            {
                "model": "openrouter/fusion",
                "messages": [{"role": "user", "content": "hi"}],
                "plugins": [{"id": "fusion", "enabled": "no"}],
            },
            "enabled",
        ),
        ({**_fusion(), "plugins": [{"id": "web"}]}, "'web' cannot be combined with fusion"),
        ({"model": "vendor/ok", "messages": []}, "non-empty list"),
        (
            {
                "model": "vendor/ok",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": "x",
            },
            "max_tokens",
        ),
        (
            {**_fusion(), "messages": [{"role": "user", "content": "x" * 30_000}]},
            "over 20000 bytes",
        ),
    ],
)
def test_a_malformed_request_is_refused_before_any_call(
    gateway: Gateway, body: bytes | dict[str, Any], problem: str
) -> None:
    response = gateway.post("/chat/completions", body)
    assert response.status_code in (400, 413), response.text
    assert problem in error_of(response)["message"]
    assert gateway.upstream.requests == []


def test_the_sdk_raises_its_error_classes_with_the_status_as_code(gateway: Gateway) -> None:
    with pytest.raises(openai.PermissionDeniedError) as denied:
        gateway.client.chat.completions.create(
            model="evil/outer",
            messages=[{"role": "user", "content": QUESTION}],
            tools=[{"type": "openrouter:fusion"}],  # type: ignore[list-item]
        )
    assert denied.value.status_code == 403
    assert isinstance(denied.value.body, dict)
    assert denied.value.body["code"] == 403  # the SDK's `.code` shows it as a string
    assert "evil/outer" in denied.value.message
    with pytest.raises(openai.APIStatusError) as refused:
        gateway.client.responses.create(
            model="openrouter/fusion",
            input=QUESTION,
            tools=[{"type": "openrouter:fusion", "parameters": {"max_tool_calls": 4}}],  # type: ignore[list-item]
        )
    assert refused.value.status_code == 402
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["code"] == 402
    assert gateway.upstream.requests == []


def test_unknown_routes_and_methods_answer_in_the_hosted_shape(gateway: Gateway) -> None:
    response = gateway.post("/embeddings", {"model": "x", "input": "y"})
    assert response.status_code == 404
    assert "no endpoint POST /v1/embeddings" in error_of(response)["message"]
    import httpx

    wrong = httpx.get(f"{gateway.url}/chat/completions")
    assert wrong.status_code == 405
    error_of(wrong)


def test_the_responses_api_applies_the_same_policy(gateway: Gateway) -> None:
    for body, status in (
        ({"model": "evil/plain", "input": "hi"}, 403),
        ({"model": "outer/priced", "input": "hi", "tools": [{"type": "openrouter:fusion"}]}, 402),
        ({"model": "openrouter/fusion", "input": "hi", "tools": [WEATHER_TOOL]}, 400),
    ):
        response = gateway.post("/responses", body)
        assert response.status_code == status, (body, response.text)
        error_of(response)
    assert gateway.upstream.requests == []
    assert json.dumps(body)  # keeps the loop variable used
