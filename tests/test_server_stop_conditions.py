"""`stop_server_tools_when` ends the outer server-tool loop, on both routes, counted at
the scripted upstream.

The outer model here calls a tool whenever it is offered one: first fusion, then the
caller's `get_weather`. Without a condition that holds, the loop deliberates and hands the
weather call back. Once a condition holds after the first step, the pending fusion call
still runs (as hosted) and the last outer call has tool calls disabled, so the answer is
text; `step_count_is: 0` allows no server-tool step at all."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_server_support import (
    CONCRETE,
    OUTER,
    PANEL,
    QUESTION,
    WEATHER_TOOL,
    Gateway,
    healthy,
    running_gateway,
)

from langchain_fusion.testing import ModelScript

FUSION_TOOL = {
    "type": "openrouter:fusion",
    "parameters": {"analysis_models": PANEL, "model": "analyst-m"},  # not the outer model
}
AFTER_THE_FIRST_STEP = {
    "step_count_is": {"type": "step_count_is", "step_count": 1},
    "has_tool_call": {"type": "has_tool_call", "tool_name": "openrouter:fusion"},
    "max_tokens_used": {"type": "max_tokens_used", "max_tokens": 1},
    "max_cost": {"type": "max_cost", "max_cost_in_dollars": 0},
    "finish_reason_is": {"type": "finish_reason_is", "reason": "tool_calls"},
}
NEVER = [
    {"type": "step_count_is", "step_count": 5},
    {"type": "finish_reason_is", "reason": "length"},
    {"type": "max_cost", "max_cost_in_dollars": 100},
]
ROUTES = ["/chat/completions", "/responses"]


@pytest.fixture(scope="module")
def shared() -> Iterator[Gateway]:
    yield from running_gateway()


@pytest.fixture
def gateway(shared: Gateway) -> Gateway:
    shared.reset()
    shared.script(OUTER, healthy(response_model=CONCRETE, tool_calls="auto", tool_policy="always"))
    return shared


def _ask(gateway: Gateway, path: str, stop: list[dict[str, Any]] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": OUTER}
    if path == "/responses":
        weather = {"type": "function", **WEATHER_TOOL["function"]}
        body |= {"input": QUESTION, "tools": [FUSION_TOOL, weather]}
    else:
        body |= {"messages": [{"role": "user", "content": QUESTION}]}
        body["tools"] = [FUSION_TOOL, WEATHER_TOOL]
    if stop is not None:
        body["stop_server_tools_when"] = stop
    response = gateway.post(path, body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _called_weather(path: str, answer: dict[str, Any]) -> bool:
    if path == "/responses":
        return any(item["type"] == "function_call" for item in answer["output"])
    return bool(answer["choices"][0]["message"].get("tool_calls"))


@pytest.mark.parametrize("path", ROUTES)
def test_without_a_condition_that_holds_the_loop_runs_on(gateway: Gateway, path: str) -> None:
    for stop in (None, NEVER):
        gateway.upstream.reset()
        answer = _ask(gateway, path, stop)
        _, second = gateway.requests(OUTER)
        assert gateway.requests(*PANEL), "fusion ran"
        assert second.body.get("tool_choice") != "none"
        assert _called_weather(path, answer)  # the caller's tool call, handed back


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("condition", sorted(AFTER_THE_FIRST_STEP))
def test_a_condition_that_holds_ends_the_loop_after_the_pending_calls(
    gateway: Gateway, path: str, condition: str
) -> None:
    answer = _ask(gateway, path, [NEVER[0], AFTER_THE_FIRST_STEP[condition]])
    first, last = gateway.requests(OUTER)  # two outer calls, no third
    assert any(t["function"]["name"] == "fusion" for t in first.body["tools"])
    assert gateway.requests(*PANEL), "the pending fusion call ran"
    assert last.body["tool_choice"] == "none"  # the last call: tool calls disabled
    assert not _called_weather(path, answer)


@pytest.mark.parametrize("path", ROUTES)
def test_step_count_zero_allows_no_server_tool_step(gateway: Gateway, path: str) -> None:
    answer = _ask(gateway, path, [{"type": "step_count_is", "step_count": 0}])
    (only,) = gateway.requests(OUTER)
    assert only.body["tool_choice"] == "none"
    assert [t["function"]["name"] for t in only.body["tools"]] == ["get_weather"]
    assert gateway.requests(*PANEL) == []
    assert not _called_weather(path, answer)


def test_a_cost_condition_counts_the_deliberation(gateway: Gateway) -> None:
    """The first outer call costs less than the cap; the deliberation takes it over: the
    next outer call is the last."""
    cheap = ModelScript(
        response_model=CONCRETE, tool_calls="auto", tool_policy="always", cost_per_token=1e-12
    )
    gateway.script(OUTER, cheap)
    cap = 1e-8  # over the outer call's cost, under the panel's (1e-6 a token)
    answer = _ask(gateway, "/chat/completions", [{"type": "max_cost", "max_cost_in_dollars": cap}])
    _, last = gateway.requests(OUTER)
    assert last.body["tool_choice"] == "none"
    assert not _called_weather("/chat/completions", answer)


# --- ChatFusion itself, invoke and ainvoke ------------------------------------------------


@pytest.fixture
def chat(gateway: Gateway) -> Any:
    from langchain_fusion.chat_models import ChatFusion

    return ChatFusion(
        model="openrouter/fusion",
        outer_model=OUTER,
        analysis_models=PANEL,
        judge_model="analyst-m",
        base_url=gateway.upstream.base_url,
        api_key="k",
        server_tools=[],
        max_retries=0,
    )


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_chat_fusion_takes_the_conditions_as_a_call_keyword(
    gateway: Gateway, chat: Any, asynchronous: bool
) -> None:
    stop = {"stop_server_tools_when": [{"type": "step_count_is", "step_count": 0}]}
    tools = {"tools": [WEATHER_TOOL]}
    if asynchronous:
        answer = await chat.ainvoke(QUESTION, **stop, **tools)
    else:
        answer = chat.invoke(QUESTION, **stop, **tools)
    assert answer.text
    assert not answer.tool_calls
    assert gateway.requests(*PANEL) == []
    (only,) = gateway.requests(OUTER)
    assert only.body["tool_choice"] == "none"


def test_chat_fusion_refuses_a_malformed_condition_before_any_call(
    gateway: Gateway, chat: Any
) -> None:
    with pytest.raises(ValueError, match=r"stop_server_tools_when\[0\]: type must be one of"):
        chat.invoke(QUESTION, stop_server_tools_when=[{"type": "step_count"}])
    with pytest.raises(ValueError, match=r"step_count is required"):
        chat.invoke(QUESTION, stop_server_tools_when=[{"type": "step_count_is"}])
    assert gateway.upstream.requests == []
