"""The Responses API through the gateway: the output items, the stream's events as OpenAI
and the hosted API define them, and a conversation that sends its fusion item back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_server_support import (
    CONCRETE,
    COST_PER_TOKEN,
    OUTER,
    PANEL,
    QUALITY_JUDGE,
    QUESTION,
    WEATHER_QUESTION,
    Gateway,
    error_of,
    healthy,
    running_gateway,
    tool_names,
)

from langchain_fusion.testing import ModelScript

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
FUSION_FORCED = {"type": "function", "name": "fusion"}
# The fields of each hosted fusion event besides type, item_id, output_index and
# sequence_number (OpenRouter's openapi.yaml, FusionCall*Event).
HOSTED_FIELDS = {
    "response.fusion_call.in_progress": set(),
    "response.fusion_call.panel.added": {"model"},
    "response.fusion_call.panel.delta": {"model", "delta"},
    "response.fusion_call.panel.completed": {"model", "content"},
    "response.fusion_call.analysis.in_progress": {"analyst_model", "judge_model"},
    "response.fusion_call.analysis.completed": {"analysis"},
    "response.fusion_call.completed": set(),
}
# Ours (docs/server.md), which the hosted events' schemas allow: what each seat spent.
OUR_FIELDS = {
    "response.fusion_call.panel.completed": {"usage"},
    "response.fusion_call.panel.failed": {"usage"},
    "response.fusion_call.analysis.completed": {"usage"},
}
# The Responses API's required fields of each standard event we send.
STANDARD_FIELDS = {
    "response.created": {"response"},
    "response.in_progress": {"response"},
    "response.output_item.added": {"output_index", "item"},
    "response.output_item.done": {"output_index", "item"},
    "response.content_part.added": {"item_id", "output_index", "content_index", "part"},
    "response.content_part.done": {"item_id", "output_index", "content_index", "part"},
    "response.output_text.delta": {"item_id", "output_index", "content_index", "delta", "logprobs"},
    "response.output_text.done": {"item_id", "output_index", "content_index", "text", "logprobs"},
    "response.completed": {"response"},
}


@pytest.fixture(scope="module")
def shared() -> Iterator[Gateway]:
    yield from running_gateway()


@pytest.fixture
def gateway(shared: Gateway) -> Gateway:
    """The module's gateway, with healthy scripts and an empty request log."""
    shared.reset()
    return shared


def _sse(gateway: Gateway, body: dict[str, Any]) -> list[dict[str, Any]]:
    """A streamed response's events, read as raw SSE (event name and data must agree)."""
    events = []
    body = {**body, "stream": True}
    with httpx.stream("POST", f"{gateway.url}/responses", json=body, timeout=30) as response:
        assert response.status_code == 200
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                assert data["type"] == name
                events.append(data)
    return events


def test_output_holds_the_fusion_item_and_the_message(gateway: Gateway) -> None:
    response = gateway.client.responses.create(
        model="openrouter/fusion",
        input=QUESTION,
        instructions="Answer in one paragraph.",
        tool_choice="required",
        max_output_tokens=300,
    )
    fusion, message = response.output
    item = fusion.model_dump(exclude_none=True)
    assert item["type"] == "openrouter:fusion"
    assert item["status"] == "completed"
    assert item["id"].startswith("st_fusion_")
    assert [r["model"] for r in item["responses"]] == PANEL
    assert set(item["analysis"]) == {
        "consensus",
        "contradictions",
        "partial_coverage",
        "unique_insights",
        "blind_spots",
    }
    # A successful run has no failure_reason key (hosted: a string or no field).
    assert "failure_reason" not in (fusion.model_extra or {})
    answer = gateway.requests(QUALITY_JUDGE)[-1]
    assert message.type == "message"
    assert response.output_text == answer.response_text
    assert answer.body["max_completion_tokens"] == 300
    # The instructions reach the panel (and the outer model) as a system message.
    for request in gateway.requests(*PANEL):
        assert request.body["messages"][0] == {
            "role": "system",
            "content": "Answer in one paragraph.",
        }
    assert response.status == "completed"
    usage = response.usage
    assert usage is not None
    assert (usage.model_extra or {})["cost"] == pytest.approx(usage.total_tokens * COST_PER_TOKEN)


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # the SDK's, on our item
async def test_the_stream_parses_with_the_sdk_helper(gateway: Gateway) -> None:
    async with gateway.aclient.responses.stream(
        model="openrouter/fusion", input=QUESTION, tool_choice="required"
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    answer = gateway.requests(QUALITY_JUDGE)[-1]
    assert final.output_text == answer.response_text
    assert [item.type for item in final.output] == ["openrouter:fusion", "message"]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.fusion_call.panel.completed" in kinds


def test_stream_events_follow_the_hosted_reference(gateway: Gateway) -> None:
    events = _sse(
        gateway, {"model": "openrouter/fusion", "input": QUESTION, "tool_choice": "required"}
    )
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    fusion_item = events[2]["item"]
    assert events[2]["type"] == "response.output_item.added"
    assert fusion_item == {
        "type": "openrouter:fusion",
        "id": fusion_item["id"],
        "status": "in_progress",
    }
    for event in events:
        kind = event["type"]
        if kind.startswith("response.fusion_call."):
            common = {"type", "item_id", "output_index", "sequence_number"}
            assert set(event) == common | HOSTED_FIELDS[kind] | OUR_FIELDS.get(kind, set())
            assert (event["item_id"], event["output_index"]) == (fusion_item["id"], 0)
        else:
            assert STANDARD_FIELDS[kind] <= set(event), event
    kinds = [e["type"] for e in events]
    fusion = [k for k in kinds if k.startswith("response.fusion_call.")]
    assert fusion[0] == "response.fusion_call.in_progress"
    assert fusion[-3:] == [
        "response.fusion_call.analysis.in_progress",
        "response.fusion_call.analysis.completed",
        "response.fusion_call.completed",
    ]
    added = [e["model"] for e in events if e["type"] == "response.fusion_call.panel.added"]
    assert added == PANEL
    analyst = next(e for e in events if e["type"] == "response.fusion_call.analysis.in_progress")
    assert analyst["analyst_model"] == analyst["judge_model"] == QUALITY_JUDGE
    # The fusion item closes before the message opens; the text deltas make the answer.
    done = kinds.index("response.output_item.done")
    assert events[done]["item"]["responses"][0]["model"] == PANEL[0]
    assert kinds[done + 1 : done + 3] == [
        "response.output_item.added",
        "response.content_part.added",
    ]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == gateway.requests(QUALITY_JUDGE)[-1].response_text
    completed = events[-1]["response"]
    assert completed["status"] == "completed"
    assert [i["type"] for i in completed["output"]] == ["openrouter:fusion", "message"]
    assert completed["output"][1]["content"][0]["text"] == text
    assert completed["usage"]["total_tokens"] > 0


def test_a_failed_panelist_is_reported_as_the_hosted_event(gateway: Gateway) -> None:
    gateway.script(PANEL[1], ModelScript(status_code=429))
    events = _sse(
        gateway, {"model": "openrouter/fusion", "input": QUESTION, "tool_choice": "required"}
    )
    (failed,) = [e for e in events if e["type"] == "response.fusion_call.panel.failed"]
    assert set(failed) == {
        "type",
        "item_id",
        "output_index",
        "sequence_number",
        "model",
        "error",
        "status_code",
        "usage",  # ours: nothing billed for a refused call
    }
    assert failed["usage"] == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    assert failed["model"] == PANEL[1]
    assert failed["status_code"] == 429
    item = events[-1]["response"]["output"][0]
    assert [f["model"] for f in item["failed_models"]] == [PANEL[1]]


def test_a_stream_that_fails_ends_with_error_and_response_failed(gateway: Gateway) -> None:
    gateway.script(QUALITY_JUDGE, ModelScript(status_code=500))  # the outer model fails
    events = _sse(gateway, {"model": "openrouter/fusion", "input": QUESTION})
    error, failed = events[-2:]
    assert error["type"] == "error"
    assert error["code"] == "server_error"  # a string: the Responses schema's error codes
    assert "scripted failure: 500" in error["message"]
    assert failed["type"] == "response.failed"
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": error["message"]}


def test_function_calls_and_a_second_turn_that_reuses_the_fusion_item(gateway: Gateway) -> None:
    gateway.script(OUTER, healthy(response_model=CONCRETE, tool_calls="auto", tool_policy="always"))
    request: dict[str, Any] = {
        "model": OUTER,
        "tools": [WEATHER, {"type": "openrouter:fusion", "parameters": {"analysis_models": PANEL}}],
        "tool_choice": FUSION_FORCED,
    }
    first = gateway.client.responses.create(input=WEATHER_QUESTION, **request)
    assert [item.type for item in first.output] == ["openrouter:fusion", "function_call"]
    call = first.output[1]
    assert call.type == "function_call"
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    assert first.model == CONCRETE
    gateway.reset()
    second = gateway.client.responses.create(
        input=[
            {"role": "user", "content": WEATHER_QUESTION},
            *(item.model_dump(exclude_none=True) for item in first.output),
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24 C"},
        ],
        **request,
    )
    assert gateway.models_called() == {OUTER}  # no panel call: the item was reused
    (outer,) = gateway.requests(OUTER)
    messages = outer.body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["function"]["name"] == "fusion"
    assert "Fusion deliberation: ok" in messages[2]["content"]
    assert tool_names(outer) == ["get_weather"]
    assert second.output_text == outer.response_text
    assert [item.type for item in second.output] == ["message"]


def test_a_request_without_fusion_is_the_model_itself(gateway: Gateway) -> None:
    response = gateway.client.responses.create(
        model="vendor/plain-model", input=[{"role": "user", "content": "Say hi."}], tools=[WEATHER]
    )
    (request,) = gateway.upstream.requests
    assert request.model == "vendor/plain-model"
    assert tool_names(request) == ["get_weather"]
    assert [item.type for item in response.output] == ["message"]
    assert response.output_text == request.response_text


async def test_a_streamed_request_without_fusion_with_the_async_client(gateway: Gateway) -> None:
    stream = await gateway.aclient.responses.create(
        model="vendor/plain-model", input="Say hi.", stream=True
    )
    events = [event async for event in stream]
    (request,) = gateway.upstream.requests
    assert request.model == "vendor/plain-model"
    assert not any(event.type.startswith("response.fusion_call") for event in events)
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == request.response_text
    assert [event.sequence_number for event in events] == list(range(len(events)))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"store": True}, "store"),
        (
            {"input": [{"role": "user", "content": "x"}, {"type": "web_search_call", "id": "x"}]},
            "web_search_call",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "nowhere", "output": "x"}]},
            "user",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": "x"},
                    {"type": "function_call_output", "call_id": "nowhere", "output": "x"},
                ]
            },
            "nowhere",
        ),
        ({"text": {"format": {"type": "json_object"}}}, "json_object"),
        (
            {"tools": [{"type": "openrouter:fusion", "parameters": {"max_tool_calls": 99}}]},
            "max_tool_calls",
        ),
        ({"tool_choice": {"type": "allowed_tools", "tools": []}}, "tool_choice"),
    ],
)
def test_an_invalid_responses_request_is_refused_before_any_call(
    gateway: Gateway, body: dict[str, Any], problem: str
) -> None:
    response = gateway.post("/responses", {"model": "openrouter/fusion", "input": QUESTION, **body})
    assert response.status_code == 400
    assert problem in error_of(response)["message"]
    assert gateway.upstream.requests == []
