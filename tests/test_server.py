"""The OpenAI-compatible fusion server, driven by the `openai` SDK over loopback HTTP.

The fusion server's backend is a scripted server, so every panel, judge and outer request
can be checked on the wire.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
import wire_schema
from test_server_support import WEATHER_TOOL

from langchain_fusion.server import FUSION_MODELS, FusionServer, create_app, fusion_models
from langchain_fusion.testing import ModelScript, RecordedRequest, ScriptedOpenAIServer

PANEL = ["panel-a", "panel-b"]
JUDGE = "judge-j"
OUTER = "outer-o"
CONCRETE = "anthropic/claude-opus-4.5"
QUESTION = "Is nuclear power part of a low-carbon grid?"
MISSING = object()
CALLS_WEATHER = ModelScript(
    tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}],
    response_model=CONCRETE,
)


@dataclass
class Setup:
    """A fusion server whose backend is `upstream`, and an SDK client for it."""

    server: FusionServer
    upstream: ScriptedOpenAIServer
    client: openai.OpenAI

    def requests(self, *models: str) -> list[RecordedRequest]:
        return [r for model in models for r in self.upstream.requests_for(model)]


def start(
    upstream: ScriptedOpenAIServer, *, api_key: str | None = None, keepalive_s: float = 15.0
) -> FusionServer:
    models = fusion_models(
        analysis_models=PANEL,
        judge_model=JUDGE,
        outer_model=OUTER,
        base_url=upstream.base_url,
        api_key="sk-upstream",
        max_retries=0,
    )
    app = create_app(models, api_key=api_key, keepalive_s=keepalive_s)
    return FusionServer(wire_schema.wrap(app))


@pytest.fixture(scope="module")
def shared() -> Iterator[Setup]:
    """One backend and one fusion server for the module: each test resets them."""
    with ScriptedOpenAIServer() as upstream, start(upstream) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-client", max_retries=2)
        yield Setup(server, upstream, client)
        client.close()


@pytest.fixture
def fusion(shared: Setup) -> Setup:
    """The shared setup, with healthy scripts and an empty request log."""
    for model in [*PANEL, JUDGE]:
        shared.upstream.set_script(model, ModelScript())
    shared.upstream.set_script(OUTER, ModelScript(response_model=CONCRETE))
    shared.upstream.reset()
    return shared


def test_models_lists_both_aliases(fusion: Setup) -> None:
    assert [model.id for model in fusion.client.models.list()] == list(FUSION_MODELS)
    assert list(FUSION_MODELS) == ["openrouter/fusion", "openrouter/fusion-flash"]


def test_required_tool_choice_deliberates(fusion: Setup) -> None:
    completion = fusion.client.chat.completions.create(
        model="openrouter/fusion",
        messages=[
            {"role": "system", "content": "Answer in one paragraph."},
            {"role": "developer", "content": "Cite numbers."},
            {"role": "user", "content": QUESTION},
        ],
        tool_choice="required",
        temperature=0.2,
        max_completion_tokens=400,
        stop=["<end>"],
    )

    # Every panelist saw the whole conversation; the judge never sees instructions.
    for request in fusion.requests(*PANEL):
        roles = [m["role"] for m in request.body["messages"]]
        assert roles == ["system", "developer", "user"]
        assert request.body["messages"][-1]["content"] == QUESTION
        assert "temperature" not in request.body  # the request's sampling is the outer's
    assert len(fusion.requests(*PANEL)) == 2
    (judge,) = fusion.requests(JUDGE)
    assert "Answer in one paragraph." not in json.dumps(judge.body["messages"])
    # Forced: the outer model only writes the answer, from the fusion result.
    (outer,) = fusion.requests(OUTER)
    assert outer.body["temperature"] == 0.2
    assert outer.body["stop"] == ["<end>"]
    assert outer.body["max_completion_tokens"] == 400
    assert outer.body["messages"][-1]["role"] == "tool"

    assert completion.model == CONCRETE  # the concrete outer model, never the alias
    choice = completion.choices[0]
    assert choice.message.content == outer.response_text
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls is None
    usage = completion.usage
    assert usage is not None
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    fusion_result = (completion.model_extra or {})["fusion"]
    assert fusion_result["status"] == "ok"
    assert [r["model"] for r in fusion_result["responses"]] == PANEL
    # Usage sums the outer call, the panel and the judge.
    assert usage.total_tokens > fusion_result["usage"]["total"]["total_tokens"] > 0


def test_streaming_joins_to_the_answer_with_a_usage_chunk(fusion: Setup) -> None:
    stream = fusion.client.chat.completions.create(
        model="openrouter/fusion-flash",
        messages=[{"role": "user", "content": QUESTION}],
        tool_choice="required",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    (outer,) = fusion.requests(OUTER)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == outer.response_text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert chunks[0].choices[0].delta.role == "assistant"
    *_, finish, usage_chunk = chunks
    assert finish.choices[0].finish_reason == "stop"
    assert finish.model == CONCRETE
    assert (finish.model_extra or {})["fusion"]["status"] == "ok"
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.parametrize("stream", [False, True])
def test_a_callers_tool_comes_back_as_tool_calls(fusion: Setup, stream: bool) -> None:
    fusion.upstream.set_script(OUTER, CALLS_WEATHER)
    request: dict[str, Any] = {
        "model": "openrouter/fusion",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
    }
    if stream:
        chunks = list(fusion.client.chat.completions.create(**request, stream=True))
        (call,) = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
        (delta,) = call.choices[0].delta.tool_calls or []
        assert delta.function is not None
        name, arguments, call_id = delta.function.name, delta.function.arguments, delta.id
        *_, finish, usage = chunks  # as hosted: usage last, though not asked for
        assert finish.choices[0].finish_reason == "tool_calls"
        assert usage.usage is not None
        assert {chunk.model for chunk in chunks} == {CONCRETE}
    else:
        completion = fusion.client.chat.completions.create(**request)
        assert completion.choices[0].finish_reason == "tool_calls"
        assert completion.model == CONCRETE
        (tool_call,) = completion.choices[0].message.tool_calls or []
        assert tool_call.type == "function"
        name, arguments, call_id = (
            tool_call.function.name,
            tool_call.function.arguments,
            tool_call.id,
        )

    assert name == "get_weather"
    assert json.loads(arguments or "") == {"city": "Paris"}
    assert call_id
    (outer,) = fusion.requests(OUTER)
    offered = [tool["function"]["name"] for tool in outer.body["tools"]]
    assert offered == ["fusion", "get_weather"]  # fusion is on offer next to the caller's
    assert fusion.requests(*PANEL, JUDGE) == []  # the outer model chose not to deliberate


def test_the_tool_result_goes_back_to_the_outer_model(fusion: Setup) -> None:
    fusion.upstream.set_script(OUTER, CALLS_WEATHER)
    completion = fusion.client.chat.completions.create(
        model="openrouter/fusion",
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"},
        ],
        tools=[WEATHER_TOOL],
    )
    (outer,) = fusion.requests(OUTER)
    assert [m["role"] for m in outer.body["messages"]] == ["user", "assistant", "tool"]
    assert outer.body["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert "sunny, 24 C" in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"


def test_a_plain_model_is_a_plain_completion_on_the_backend(fusion: Setup) -> None:
    # Issue 13 changed this: any model is served, as on OpenRouter. Without fusion
    # anywhere, the request reaches the backend as it came, extra fields included.
    completion = fusion.client.chat.completions.create(
        model="openai/gpt-4.1",
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"provider": {"sort": "price"}},
    )
    (request,) = fusion.upstream.requests
    assert request.model == "openai/gpt-4.1"
    assert request.body["provider"] == {"sort": "price"}
    assert "tools" not in request.body  # no fusion tool was added
    assert completion.choices[0].message.content == request.response_text
    assert (completion.model_extra or {}).get("fusion") is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        ({"model": "openrouter/fusion", "messages": MISSING}, "messages: Field required"),
        ({"model": "openrouter/fusion", "messages": []}, "messages"),
        ({"model": "openrouter/fusion", "messages": [{"role": "wizard", "content": "x"}]}, "role"),
        ({"model": "openrouter/fusion", "messages": [{"role": "system", "content": "x"}]}, "user"),
        ({"model": "openrouter/fusion", "temperature": 3}, "temperature"),
        ({"model": "openrouter/fusion", "n": 2}, "n"),
        ({"model": "openrouter/fusion", "response_format": {"type": "json_object"}}, "json"),
        ({"model": "openrouter/fusion", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": "openrouter/fusion", "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"model": "openrouter/fusion", "tool_choice": {"type": "function", "function": {}}},
            "name",
        ),
        (
            {
                "model": "openrouter/fusion",
                "tools": [{"type": "function", "function": {"name": "fusion"}}],
            },
            "reserved",
        ),
        (
            {
                "model": "openrouter/fusion",
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            },
            "not in 'tools'",
        ),
        (
            {
                "model": "openrouter/fusion",
                "tools": [{"type": "openrouter:fusion", "parameters": {"preset": "x"}}],
            },
            "preset",
        ),
        (
            {
                "model": "openrouter/fusion",
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "tool", "tool_call_id": "nowhere", "content": "y"},
                ],
            },
            "answers no earlier",
        ),
    ],
)
def test_an_invalid_request_is_a_400_before_any_call(
    fusion: Setup, body: bytes | dict[str, Any], problem: str
) -> None:
    if isinstance(body, dict):
        body = {"messages": [{"role": "user", "content": QUESTION}], **body}
        content = json.dumps({k: v for k, v in body.items() if v is not MISSING}).encode()
    else:
        content = body
    response = httpx.post(
        f"{fusion.server.base_url}/chat/completions",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400  # the hosted shape: the status as an integer
    assert problem in error["message"]
    assert fusion.upstream.requests == []


def test_the_sdk_sees_a_400_as_bad_request(fusion: Setup) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        fusion.client.chat.completions.create(
            model="openrouter/fusion",
            messages=[{"role": "user", "content": QUESTION}],
            temperature=2.5,
        )
    assert raised.value.status_code == 400
    assert "temperature" in raised.value.message


def test_an_upstream_failure_is_a_502_the_sdk_does_not_retry(fusion: Setup) -> None:
    fusion.upstream.set_script(OUTER, ModelScript(status_code=500))
    with pytest.raises(openai.InternalServerError) as raised:
        fusion.client.chat.completions.create(
            model="openrouter/fusion", messages=[{"role": "user", "content": QUESTION}]
        )
    assert raised.value.status_code == 502
    assert "scripted failure: 500" in raised.value.message
    # One outer call: `x-should-retry: false` kept the SDK from re-running the request.
    assert len(fusion.requests(OUTER)) == 1


def test_a_stream_failure_arrives_as_an_error_event(fusion: Setup) -> None:
    fusion.upstream.set_script(OUTER, ModelScript(status_code=500))
    stream = fusion.client.chat.completions.create(
        model="openrouter/fusion",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
    )
    with pytest.raises(openai.APIError, match="scripted failure: 500"):
        list(stream)


def test_a_server_key_is_required_when_set(scripted_server: ScriptedOpenAIServer) -> None:
    with start(scripted_server, api_key="sk-fusion") as server:
        wrong = openai.OpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        right = openai.OpenAI(base_url=server.base_url, api_key="sk-fusion", max_retries=0)
        assert [m.id for m in right.models.list()] == list(FUSION_MODELS)
    assert scripted_server.requests == []


def test_a_waiting_stream_sends_keepalive_comments(scripted_server: ScriptedOpenAIServer) -> None:
    for model in PANEL:
        scripted_server.set_script(model, ModelScript(time_to_first_token=0.4))
    with start(scripted_server, keepalive_s=0.1) as server:
        body = {
            "model": "openrouter/fusion",
            "messages": [{"role": "user", "content": QUESTION}],
            "tool_choice": "required",
            "stream": True,
        }
        with httpx.stream(
            "POST", f"{server.base_url}/chat/completions", json=body, timeout=10
        ) as response:
            lines = [line for line in response.iter_lines() if line]
    comments = [i for i, line in enumerate(lines) if line.startswith(":")]
    first_text = next(i for i, line in enumerate(lines) if _delta_text(line))
    assert len(comments) >= 2  # sent while the panel was thinking...
    assert comments[0] < first_text  # ...before the answer began
    assert lines[-1] == "data: [DONE]"


def test_a_client_that_leaves_cancels_the_deliberation(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    for model in PANEL:
        scripted_server.set_script(model, ModelScript(time_to_first_token=0.5))
    with start(scripted_server) as server:
        body = {
            "model": "openrouter/fusion",
            "messages": [{"role": "user", "content": QUESTION}],
            "tool_choice": "required",
        }
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=0.2)
        time.sleep(0.8)  # past the panel's answer: a live deliberation would call the judge
    assert len([r for m in PANEL for r in scripted_server.requests_for(m)]) == 2
    assert scripted_server.requests_for(JUDGE) == []
    assert scripted_server.requests_for(OUTER) == []


def _delta_text(line: str) -> str:
    if not line.startswith("data: {"):
        return ""
    choices = json.loads(line.removeprefix("data: "))["choices"]
    return str(choices[0]["delta"].get("content") or "") if choices else ""
