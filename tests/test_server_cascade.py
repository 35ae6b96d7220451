"""The gateway's `parameters.cascade`: our extension of the fusion tool's parameters, run as
asked, validated before any upstream call, and refused where the operator turns extensions
off (`--no-extensions`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_server_support import (
    FORCE_FUSION,
    OUTER,
    QUESTION,
    Gateway,
    error_of,
    healthy,
    running_gateway,
)

from langchain_fusion.server.policy import Policy
from langchain_fusion.testing.judges import comparing_judge

SEATS = ["seat-1", "seat-2", "seat-3"]
JUDGE = "judge-q"


@pytest.fixture(scope="module")
def shared() -> Iterator[Gateway]:
    yield from running_gateway()


@pytest.fixture(scope="module")
def closed() -> Iterator[Gateway]:
    yield from running_gateway(policy=Policy(extensions=False))


@pytest.fixture
def gateway(shared: Gateway) -> Gateway:
    shared.reset()
    shared.script(JUDGE, healthy(json_reply=comparing_judge()))
    return shared


def _ask(gateway: Gateway, cascade: Any, answers: list[str] | None = None) -> Any:
    for seat, answer in zip(SEATS, answers or ["42", "42", "42"], strict=True):
        gateway.script(seat, healthy(reply=answer))
    tool = {
        "type": "openrouter:fusion",
        "parameters": {"analysis_models": SEATS, "model": JUDGE, "cascade": cascade},
    }
    return gateway.post(
        "/chat/completions",
        {
            "model": OUTER,
            "messages": [{"role": "user", "content": QUESTION}],
            "tools": [tool],
            "tool_choice": FORCE_FUSION,
        },
    )


def _calls(gateway: Gateway, model: str) -> int:
    return len(gateway.requests(model))


def test_agreeing_first_seats_leave_the_rest_uncalled(gateway: Gateway) -> None:
    response = _ask(gateway, {"first": 2, "rule": "exact"})
    assert response.status_code == 200, response.text
    assert [_calls(gateway, seat) for seat in SEATS] == [1, 1, 0]
    assert _calls(gateway, JUDGE) == 0  # the exact rule needs no analysis
    assert response.json()["choices"][0]["message"]["content"]


def test_disagreeing_first_seats_bring_in_the_rest(gateway: Gateway) -> None:
    response = _ask(gateway, {"first": 2}, ["42", "41", "42"])
    assert response.status_code == 200, response.text
    assert [_calls(gateway, seat) for seat in SEATS] == [1, 1, 1]
    assert _calls(gateway, JUDGE) == 2  # the first seats, then every answer


@pytest.mark.parametrize(
    ("cascade", "message"),
    [
        ({"first": 3}, "no seat would be left to escalate to"),
        ({"first": 2, "rul": "exact"}, "unknown field; allowed fields: first, rule"),
        ({"first": 2, "rule": "fuzzy"}, "one of analysis, exact, normalised, numeric"),
        ("two", "expected an object"),
    ],
)
def test_a_bad_cascade_is_a_400_before_any_upstream_call(
    gateway: Gateway, cascade: Any, message: str
) -> None:
    response = _ask(gateway, cascade)
    assert response.status_code == 400
    error = error_of(response)
    assert "parameters.cascade" in error["message"]
    assert message in error["message"]
    assert gateway.upstream.requests == []


def test_extensions_turned_off_refuse_the_cascade_with_a_clear_400(closed: Gateway) -> None:
    closed.reset()
    response = _ask(closed, {"first": 2})
    assert response.status_code == 400
    error = error_of(response)
    assert "not part of the hosted contract" in error["message"]
    assert "--no-extensions" in error["message"]
    assert error["metadata"] == {"param": "parameters.cascade"}
    assert closed.upstream.requests == []
    responses = closed.post(
        "/responses",
        {
            "model": OUTER,
            "input": QUESTION,
            "tools": [{"type": "openrouter:fusion", "parameters": {"cascade": {"first": 2}}}],
        },
    )
    assert responses.status_code == 400
    assert "--no-extensions" in error_of(responses)["message"]
    assert closed.upstream.requests == []


def test_extensions_turned_off_still_serve_the_hosted_parameters(closed: Gateway) -> None:
    closed.reset()
    for seat in SEATS:
        closed.script(seat, healthy())
    closed.script(JUDGE, healthy())
    tool = {"type": "openrouter:fusion", "parameters": {"analysis_models": SEATS, "model": JUDGE}}
    response = closed.post(
        "/chat/completions",
        {
            "model": OUTER,
            "messages": [{"role": "user", "content": QUESTION}],
            "tools": [tool],
            "tool_choice": FORCE_FUSION,
        },
    )
    assert response.status_code == 200, response.text
    assert [_calls(closed, seat) for seat in SEATS] == [1, 1, 1]


def test_the_request_worst_case_counts_the_cascade_s_second_judge_call() -> None:
    from langchain_core.messages import HumanMessage

    from langchain_fusion import ChatFusion
    from langchain_fusion.backends import DEFAULT_MAX_RETRIES
    from langchain_fusion.server.routing import AliasDefaults, find_fusion, resolve

    defaults = AliasDefaults.of(
        "openrouter/fusion",
        ChatFusion(model="openrouter/fusion", base_url="http://127.0.0.1:9", api_key="sk-x"),
    )
    policy = Policy()

    def worst(cascade: dict[str, Any] | None) -> int:
        parameters: dict[str, Any] = {"analysis_models": SEATS, "model": JUDGE, "tools": []}
        if cascade is not None:
            parameters["cascade"] = cascade
        ask = find_fusion(OUTER, [{"type": "openrouter:fusion", "parameters": parameters}], None)
        assert ask is not None
        estimate = policy.fusion_worst_case(
            resolve(ask, defaults), [HumanMessage(QUESTION)], outer_max_tokens=100
        )
        return estimate.calls

    plain = worst(None)
    attempts = 1 + DEFAULT_MAX_RETRIES  # every call is counted once per attempt (limits/)
    assert worst({"first": 2}) == plain + 2 * attempts  # one more analysis, and its retry
    assert worst({"first": 2, "rule": "exact"}) == plain  # no first analysis: the panel's own


def test_an_escalation_streams_only_the_hosted_events(gateway: Gateway) -> None:
    """On the wire the cascade shows as the hosted events: the first seats added, then the
    rest; our `cascade.escalated` event stays off it, and the item keeps the contract's
    fields."""
    import json

    import httpx

    for seat, reply in zip(SEATS, ["42", "41", "42"], strict=True):
        gateway.script(seat, healthy(reply=reply))
    tool = {
        "type": "openrouter:fusion",
        "parameters": {"analysis_models": SEATS, "model": JUDGE, "cascade": {"first": 2}},
    }
    body = {"model": OUTER, "input": QUESTION, "tools": [tool], "stream": True}
    body["tool_choice"] = {"type": "function", "name": "fusion"}
    events = []
    with httpx.stream("POST", f"{gateway.url}/responses", json=body, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
    kinds = [e["type"] for e in events]
    assert not any("cascade" in kind for kind in kinds)
    added = [e["model"] for e in events if e["type"] == "response.fusion_call.panel.added"]
    assert added == SEATS
    assert kinds.count("response.fusion_call.analysis.in_progress") == 2
    done = next(e for e in events if e["type"] == "response.output_item.done")
    assert "cascade" not in done["item"]
    assert [r["model"] for r in done["item"]["responses"]] == SEATS


def test_the_fusion_plugin_takes_the_cascade_too(gateway: Gateway) -> None:
    for seat, reply in zip(SEATS, ["7", "7", "8"], strict=True):
        gateway.script(seat, healthy(reply=reply))
    plugin = {"id": "fusion", "analysis_models": SEATS, "model": JUDGE}
    plugin["cascade"] = {"first": 2, "rule": "exact"}
    response = gateway.post(
        "/chat/completions",
        {
            "model": "openrouter/fusion",
            "messages": [{"role": "user", "content": QUESTION}],
            "plugins": [plugin],
            "tool_choice": FORCE_FUSION,
        },
    )
    assert response.status_code == 200, response.text
    assert [_calls(gateway, seat) for seat in SEATS] == [1, 1, 0]


def test_serve_s_configuration_carries_no_extensions_to_every_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`serve --no-extensions` sets `ServerConfig.extensions`; workers rebuild the app from
    its JSON (`app_from_environment`), whose gateway then refuses the cascade."""
    import httpx

    from langchain_fusion.server import FusionServer
    from langchain_fusion.server.config import CONFIG_ENV, ServerConfig, app_from_environment
    from langchain_fusion.testing import ScriptedOpenAIServer

    with ScriptedOpenAIServer(default=healthy()) as upstream:
        monkeypatch.setenv("OPENROUTER_BASE_URL", upstream.base_url)
        monkeypatch.setenv("OPENROUTER_API_KEY", "sk-upstream")
        config = ServerConfig(parameters={"analysis_models": SEATS, "tools": []}, extensions=False)
        monkeypatch.setenv(CONFIG_ENV, config.model_dump_json())  # what `export` sets
        tool = {"type": "openrouter:fusion", "parameters": {"cascade": {"first": 2}}}
        body = {"model": OUTER, "messages": [{"role": "user", "content": QUESTION}]}
        with FusionServer(app_from_environment()) as server:
            response = httpx.post(
                f"{server.base_url}/chat/completions", json={**body, "tools": [tool]}, timeout=30
            )
        assert response.status_code == 400
        assert "--no-extensions" in error_of(response)["message"]
        assert upstream.requests == []
