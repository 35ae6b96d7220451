"""Chat Completions through the gateway: every way of asking for fusion, as an OpenRouter
user sends it, with the scripted backend showing which models were really called.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route
from test_server_support import (
    CONCRETE,
    COST_PER_TOKEN,
    FORCE_FUSION,
    OUTER,
    PANEL,
    QUALITY_JUDGE,
    QUESTION,
    WEATHER_QUESTION,
    WEATHER_TOOL,
    Gateway,
    healthy,
    running_gateway,
    settings,
    start,
    tool_names,
)

from langchain_fusion.backends import OpenAICompatibleBackend
from langchain_fusion.background import BackgroundServer
from langchain_fusion.contract.presets import PRESETS
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

DOC_PANEL = ["~google/gemini-flash-latest", "deepseek/deepseek-v3.2", "~moonshotai/kimi-latest"]


@pytest.fixture(scope="module")
def shared() -> Iterator[Gateway]:
    yield from running_gateway()


@pytest.fixture
def gateway(shared: Gateway) -> Gateway:
    """The module's gateway, with healthy scripts and an empty request log."""
    shared.reset()
    return shared


def _record(message: dict[str, Any]) -> dict[str, Any]:
    (record,) = message["reasoning_details"]
    assert record["type"] == "reasoning.server_tool_call"
    assert record["tool_name"] == "openrouter:fusion"
    return record


# --- the two requests of OpenRouter's documentation, verbatim -------------------------------


def test_documentation_request_with_the_server_tool_on_any_model(gateway: Gateway) -> None:
    gateway.script(QUALITY_JUDGE, healthy(tool_calls="auto"))  # the outer model calls fusion
    response = gateway.post(
        "/chat/completions",
        {
            "model": "~anthropic/claude-opus-latest",
            "messages": [
                {
                    "role": "user",
                    "content": "Survey the strongest arguments for and against a carbon tax. "
                    "Where do experts disagree?",
                }
            ],
            "tools": [{"type": "openrouter:fusion"}],
        },
    )
    assert response.status_code == 200, response.text
    # The server's panel, and the request's own model as outer model and judge (the
    # hosted default): nothing else was called.
    assert gateway.models_called() == {*PANEL, QUALITY_JUDGE}
    decide, judge, answer = gateway.requests(QUALITY_JUDGE)
    assert tool_names(decide) == ["fusion"]  # the server tool, offered as a function
    assert judge.body["response_format"]["type"] == "json_schema"
    assert answer.body["messages"][-1]["role"] == "tool"
    body = response.json()
    assert body["model"] == QUALITY_JUDGE
    message = body["choices"][0]["message"]
    assert message["content"] == answer.response_text
    assert [r["model"] for r in body["fusion"]["responses"]] == PANEL
    record = _record(message)
    assert json.loads(record["result"])["responses"] == body["fusion"]["responses"]


def test_documentation_request_with_a_panel_and_judge_per_request(gateway: Gateway) -> None:
    gateway.script(QUALITY_JUDGE, healthy(tool_calls="auto"))
    response = gateway.post(
        "/chat/completions",
        {
            "model": "openrouter/fusion",
            "messages": [{"role": "user", "content": QUESTION}],
            "tools": [
                {
                    "type": "openrouter:fusion",
                    "parameters": {
                        "analysis_models": [
                            "~google/gemini-flash-latest",
                            "deepseek/deepseek-v3.2",
                            "~moonshotai/kimi-latest",
                        ],
                        "model": "~anthropic/claude-opus-latest",
                    },
                }
            ],
        },
    )
    assert response.status_code == 200, response.text
    # The request's panel and judge, and the alias resolved to that judge: not the
    # server's panel.
    assert gateway.models_called() == {*DOC_PANEL, QUALITY_JUDGE}
    for model in DOC_PANEL:
        (request,) = gateway.requests(model)
        assert request.body["messages"][-1]["content"] == QUESTION
        assert request.headers["x-openrouter-fusion-depth"] == "1"
    body = response.json()
    assert [r["model"] for r in body["fusion"]["responses"]] == DOC_PANEL


# --- the server tool next to the caller's tools, with the SDK ---------------------------------


def _fusion_tool(**parameters: Any) -> dict[str, Any]:
    return {"type": "openrouter:fusion", "parameters": parameters}


def test_per_request_parameters_reach_every_inner_call(gateway: Gateway) -> None:
    gateway.script(OUTER, healthy(response_model=CONCRETE, tool_calls="auto", tool_policy="always"))
    completion = gateway.client.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=[
            WEATHER_TOOL,
            _fusion_tool(  # type: ignore[list-item]  (a server tool the SDK does not type)
                analysis_models=["p-one", "p-two"],
                model="judge-q",
                max_completion_tokens=300,
                temperature=0.3,
                reasoning={"effort": "low"},
            ),
        ],
        tool_choice=FORCE_FUSION,  # type: ignore[arg-type]
        temperature=0.7,
        max_tokens=200,
    )
    assert gateway.models_called() == {"p-one", "p-two", "judge-q", OUTER}
    for model in ("p-one", "p-two"):
        (request,) = gateway.requests(model)
        assert request.body["temperature"] == 0.3
        assert request.body["max_completion_tokens"] == 300
        assert request.body["reasoning"] == {"effort": "low"}
    (judge,) = gateway.requests("judge-q")
    assert judge.body["temperature"] == 0  # the judge always runs at 0
    (outer,) = gateway.requests(OUTER)
    assert outer.body["temperature"] == 0.7
    assert outer.body["max_completion_tokens"] == 200
    assert tool_names(outer) == ["get_weather"]  # fusion ran: only the caller's tools now
    # The caller's tool call comes back, with the fusion call as a reasoning record.
    assert completion.choices[0].finish_reason == "tool_calls"
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    message = completion.choices[0].message.model_dump()
    record = _record(message)
    assert json.loads(record["arguments"])["prompt"] == WEATHER_QUESTION
    assert completion.model == CONCRETE


async def test_async_client_and_the_second_turn_rehydrates_reasoning_details(
    gateway: Gateway,
) -> None:
    gateway.script(OUTER, healthy(tool_calls="auto", tool_policy="always"))
    request: dict[str, Any] = {
        "model": OUTER,
        "tools": [WEATHER_TOOL, _fusion_tool(analysis_models=PANEL)],
        "tool_choice": FORCE_FUSION,
    }
    first = await gateway.aclient.chat.completions.create(
        messages=[{"role": "user", "content": WEATHER_QUESTION}], **request
    )
    assert {r.model for r in gateway.upstream.requests} == {*PANEL, OUTER}
    returned = first.choices[0].message.model_dump(exclude_none=True)
    (call,) = returned["tool_calls"]
    gateway.reset()  # the outer model now answers in text
    second = await gateway.aclient.chat.completions.create(
        messages=[
            {"role": "user", "content": WEATHER_QUESTION},
            returned,  # with its reasoning_details, as the SDK gives it back
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 24 C"},
        ],
        **request,  # the same forced tool_choice: fusion has run in this turn all the same
    )
    # No deliberation: the record was rehydrated, and the turn already had its fusion.
    assert gateway.models_called() == {OUTER}
    (outer,) = gateway.requests(OUTER)
    messages = outer.body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool"]
    (fusion_call,) = messages[1]["tool_calls"]
    assert fusion_call["function"]["name"] == "fusion"
    assert messages[2]["tool_call_id"] == fusion_call["id"]
    assert "Fusion deliberation: ok" in messages[2]["content"]
    assert messages[3]["tool_calls"][0]["id"] == call["id"] == messages[4]["tool_call_id"]
    assert tool_names(outer) == ["get_weather"]
    assert "sunny, 24 C" in (second.choices[0].message.content or "")


def test_a_new_turn_may_deliberate_again(gateway: Gateway) -> None:
    forced = {"model": "openrouter/fusion", "tool_choice": "required"}
    first = gateway.client.chat.completions.create(
        messages=[{"role": "user", "content": QUESTION}], **forced
    )
    gateway.reset()
    gateway.client.chat.completions.create(
        messages=[
            {"role": "user", "content": QUESTION},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "user", "content": "And for a small open economy?"},
        ],
        **forced,
    )
    assert {r.model for r in gateway.requests(*PANEL)} == set(PANEL)  # one fusion per turn
    (outer,) = gateway.requests(QUALITY_JUDGE)[-1:]
    tool_messages = [m for m in outer.body["messages"] if m["role"] == "tool"]
    assert len(tool_messages) == 2  # the earlier result, rehydrated, and this turn's


def test_one_fusion_per_turn_caps_a_second_call(gateway: Gateway) -> None:
    twice = [{"name": "fusion", "arguments": {"prompt": p}} for p in ("first", "second")]
    gateway.script(OUTER, healthy(tool_calls=twice))
    completion = gateway.client.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": QUESTION}],
        tools=[_fusion_tool()],  # type: ignore[list-item]
    )
    assert len(gateway.requests(*PANEL)) == 2  # one deliberation: one call per panelist
    answer = gateway.requests(OUTER)[-1]
    results = [m["content"] for m in answer.body["messages"] if m["role"] == "tool"]
    assert len(results) == 2
    assert "fusion_invocation_capped" in results[1]
    records = completion.choices[0].message.model_dump()["reasoning_details"]
    outcomes = [json.loads(r["result"]).get("failure_reason") for r in records]
    assert outcomes == [None, "fusion_invocation_capped"]


# --- the plugin form, the aliases, tool_choice ------------------------------------------------


def test_the_plugin_configures_the_fusion_tool(gateway: Gateway) -> None:
    completion = gateway.client.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": QUESTION}],
        tool_choice="required",
        extra_body={"plugins": [{"id": "fusion", "analysis_models": ["p-x"], "model": "judge-y"}]},
    )
    assert gateway.models_called() == {"p-x", "judge-y", OUTER}
    assert [r["model"] for r in (completion.model_extra or {})["fusion"]["responses"]] == ["p-x"]


@pytest.mark.parametrize("model", ["openrouter/fusion", OUTER])
def test_the_plugin_disabled_means_no_deliberation(gateway: Gateway, model: str) -> None:
    completion = gateway.client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"plugins": [{"id": "fusion", "enabled": False}]},
    )
    outer = QUALITY_JUDGE if model == "openrouter/fusion" else OUTER
    assert gateway.models_called() == {outer}
    (request,) = gateway.requests(outer)
    assert "fusion" not in tool_names(request)
    assert completion.choices[0].message.content == request.response_text


def test_the_aliases_default_to_their_presets_without_a_configured_panel(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    model_settings = settings(scripted_server)
    del model_settings["analysis_models"]
    with start(scripted_server, model_settings=model_settings) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        for alias, preset in (
            ("openrouter/fusion", "general-high"),
            ("openrouter/fusion-flash", "general-fast"),
        ):
            scripted_server.reset()
            client.chat.completions.create(
                model=alias,
                messages=[{"role": "user", "content": QUESTION}],
                tool_choice="required",
            )
            expected = {*PRESETS[preset].analysis_models, PRESETS[preset].model}
            calls = [r for r in scripted_server.requests if r.path.endswith("/completions")]
            assert {r.model for r in calls} == expected


def test_the_server_tool_choice_forces_deliberation(gateway: Gateway) -> None:
    gateway.client.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": QUESTION}],
        tools=[_fusion_tool()],  # type: ignore[list-item]
        tool_choice={"type": "openrouter:fusion"},  # type: ignore[arg-type]
    )
    assert gateway.models_called() == {*PANEL, OUTER}


def test_tool_choice_none_keeps_fusion_out(gateway: Gateway) -> None:
    gateway.script(OUTER, healthy(tool_calls="auto"))
    gateway.client.chat.completions.create(
        model="openrouter/fusion",
        messages=[{"role": "user", "content": QUESTION}],
        tool_choice="none",
    )
    assert gateway.models_called() == {QUALITY_JUDGE}
    (request,) = gateway.requests(QUALITY_JUDGE)
    assert request.body["tool_choice"] == "none"


# --- usage, streaming, plain completions ------------------------------------------------------


def test_usage_sums_every_inner_call(gateway: Gateway) -> None:
    completion = gateway.client.chat.completions.create(
        model="openrouter/fusion",
        messages=[{"role": "user", "content": QUESTION}],
        tool_choice="required",
    )
    usage = completion.usage
    assert usage is not None
    # Every call reports cost = its tokens x COST_PER_TOKEN: the cost (summed from each
    # call) matches the tokens (summed by ChatFusion) only when no call is missing.
    assert len(gateway.upstream.requests) == 4
    cost = (usage.model_extra or {})["cost"]
    assert cost == pytest.approx(usage.total_tokens * COST_PER_TOKEN)
    fusion_total = (completion.model_extra or {})["fusion"]["usage"]["total"]["total_tokens"]
    assert usage.total_tokens > fusion_total > 0


def test_streaming_with_the_server_tool_ends_with_records_and_usage(gateway: Gateway) -> None:
    chunks = list(
        gateway.client.chat.completions.create(
            model=OUTER,
            messages=[{"role": "user", "content": QUESTION}],
            tools=[_fusion_tool(analysis_models=PANEL)],  # type: ignore[list-item]
            tool_choice=FORCE_FUSION,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    judge, outer = gateway.requests(OUTER)  # the judge defaults to the outer model
    assert judge.body["response_format"]["type"] == "json_schema"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == outer.response_text
    (details,) = [
        c.choices[0].delta.model_dump()["reasoning_details"]
        for c in chunks
        if c.choices and (c.choices[0].delta.model_extra or {}).get("reasoning_details")
    ]
    assert json.loads(details[0]["result"])["status"] == "ok"
    *_, finish, usage = chunks
    assert finish.choices[0].finish_reason == "stop"
    assert finish.model == CONCRETE
    assert usage.usage is not None
    cost = (usage.usage.model_extra or {})["cost"]
    assert cost == pytest.approx(usage.usage.total_tokens * COST_PER_TOKEN)


async def test_async_streaming_with_a_callers_tool(gateway: Gateway) -> None:
    gateway.script(OUTER, healthy(response_model=CONCRETE, tool_calls="auto"))
    stream = await gateway.aclient.chat.completions.create(
        model=OUTER,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=[WEATHER_TOOL, _fusion_tool()],  # type: ignore[list-item]
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    (decide,) = gateway.requests(OUTER)
    assert tool_names(decide) == ["fusion", "get_weather"]
    (with_calls,) = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    (call,) = with_calls.choices[0].delta.tool_calls or []
    assert call.function is not None
    assert call.function.name == "get_weather"
    *_, finish, usage = chunks  # as hosted: usage last, though include_usage was not sent
    assert finish.choices[0].finish_reason == "tool_calls"
    assert usage.choices == []
    assert usage.usage is not None
    assert usage.usage.total_tokens > 0
    assert {chunk.model for chunk in chunks} == {CONCRETE}
    assert gateway.requests(*PANEL) == []  # the outer model chose the caller's tool


@pytest.mark.parametrize("stream", [False, True])
def test_a_plain_request_is_relayed_as_it_came(gateway: Gateway, stream: bool) -> None:
    request: dict[str, Any] = {
        "model": "vendor/plain-model",
        "messages": [{"role": "user", "content": "Say hi."}],
        "tools": [WEATHER_TOOL],
        "extra_body": {"provider": {"order": ["x"]}},
    }
    if stream:
        chunks = list(gateway.client.chat.completions.create(stream=True, **request))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        # As hosted: the last chunk carries usage, asked for or not.
        assert chunks[-1].usage is not None
        assert all(c.usage is None for c in chunks[:-1])
        assert gateway.upstream.requests[0].body["stream_options"] == {"include_usage": True}
    else:
        completion = gateway.client.chat.completions.create(**request)
        text = completion.choices[0].message.content or ""
    (upstream,) = gateway.upstream.requests
    assert upstream.model == "vendor/plain-model"
    assert upstream.body["provider"] == {"order": ["x"]}
    assert tool_names(upstream) == ["get_weather"]  # no fusion added
    assert upstream.headers["authorization"] == "Bearer sk-upstream-server-key-0000000000"
    assert text == upstream.response_text


def test_a_plain_upstream_error_comes_back_in_the_hosted_shape(gateway: Gateway) -> None:
    gateway.script("vendor/broken", ModelScript(status_code=429))
    response = gateway.post(
        "/chat/completions",
        {"model": "vendor/broken", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 429
    error = response.json()["error"]
    assert error == {
        "code": 429,
        "message": error["message"],
        "metadata": error["metadata"],
        "availability": error["availability"],
    }
    assert error["availability"]["code"] == "capacity_exhausted"
    assert "scripted failure" in error["message"]
    assert error["metadata"]["upstream_status"] == 429


def test_a_plain_stream_that_fails_midway_ends_with_a_hosted_error_event() -> None:
    """A backend that breaks off a stream with its own error event (OpenAI's shape)."""

    async def completions(request: Request) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}],
            }
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            error = {"message": "the provider is overloaded", "type": "server_error", "code": None}
            yield f"data: {json.dumps({'error': error})}\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    backend = BackgroundServer(
        Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    )
    with backend, ScriptedOpenAIServer() as unused:
        model_settings = settings(unused, base_url=backend.url("/v1"))
        with start(unused, model_settings=model_settings) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
            stream = client.chat.completions.create(
                model="vendor/flaky", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            with pytest.raises(openai.APIError) as raised:
                list(stream)
    assert raised.value.message == "the provider is overloaded"
    assert raised.value.body == {
        "code": 502,
        "message": "the provider is overloaded",
        "metadata": {
            "upstream_code": None,
            "upstream": {"type": "server_error"},
            "error_type": "provider_unavailable",  # the hosted ApiErrorType of a 502
        },
    }


def test_cache_control_reaches_panel_and_judge_on_an_openrouter_backend(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    # `runs_hosted_tools=True`: the backend is taken for OpenRouter, which knows cache_control.
    backend = OpenAICompatibleBackend(
        base_url=scripted_server.base_url, api_key=SecretStr("sk-x"), runs_hosted_tools=True
    )
    with start(
        scripted_server, model_settings=settings(scripted_server, backend=backend)
    ) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        for cache_control in ({"type": "ephemeral", "ttl": "1h"}, None):
            scripted_server.reset()
            parameters: dict[str, Any] = {"cache_control": cache_control} if cache_control else {}
            client.chat.completions.create(
                model=OUTER,
                messages=[{"role": "user", "content": QUESTION}],
                tools=[_fusion_tool(**parameters)],  # type: ignore[list-item]
                tool_choice=FORCE_FUSION,  # type: ignore[arg-type]
            )
            assert {r.model for r in scripted_server.requests} == {*PANEL, OUTER}
            # The contract forwards it to panel and judge calls (the judge is the outer
            # model here: its call is the one asking for the analysis schema).
            inner = [
                r
                for r in scripted_server.requests
                if r.model in PANEL or "response_format" in r.body
            ]
            outer = [r for r in scripted_server.requests if r not in inner]
            assert len(inner) == len(PANEL) + 1
            assert outer
            assert all(r.body.get("cache_control") == cache_control for r in inner)
            assert all("cache_control" not in r.body for r in outer)
