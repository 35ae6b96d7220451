"""`POST /v1/messages` without fusion, through the `anthropic` SDK (sync and async,
streamed and not): the request is relayed to the model itself, as the hosted service does,
with Anthropic's shapes in and out, images and extended thinking included."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from messages_support import WEATHER, anthropic_client, async_anthropic_client
from test_server_support import PANEL, Gateway, healthy, running_gateway

from langchain_fusion.testing import ModelScript

PLAIN, PLAIN_CONCRETE = "vendor/plain-model", "vendor/plain-model-2025"
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n-one-pixel").decode()


@pytest.fixture(scope="module")
def shared() -> Iterator[Gateway]:
    yield from running_gateway()


@pytest.fixture
def gateway(shared: Gateway) -> Gateway:
    shared.reset()
    shared.script(PLAIN, healthy(response_model=PLAIN_CONCRETE))
    return shared


def _only_call(gateway: Gateway) -> dict[str, Any]:
    assert gateway.models_called() == {PLAIN}  # no panel, no analyst: the model itself
    (call,) = gateway.requests(PLAIN)
    return call.body


def test_a_plain_message_is_the_models_own_answer(gateway: Gateway) -> None:
    with anthropic_client(gateway) as client:
        message = client.messages.create(
            model=PLAIN,
            max_tokens=300,
            system="Be brief.",
            messages=[{"role": "user", "content": "Why is the sky blue?"}],
            extra_body={"temperature": 0.2},
        )
    body = _only_call(gateway)
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 300
    assert body["temperature"] == 0.2
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert message.model == PLAIN_CONCRETE
    assert message.content[0].type == "text"
    assert message.content[0].text == gateway.requests(PLAIN)[0].response_text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0


def test_a_plain_stream_has_anthropics_events(gateway: Gateway) -> None:
    with (
        anthropic_client(gateway) as client,
        client.messages.stream(
            model=PLAIN, max_tokens=300, messages=[{"role": "user", "content": "Hello?"}]
        ) as stream,
    ):
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert "content_block_delta" in kinds
    assert final.model == PLAIN_CONCRETE
    assert final.content[0].text == gateway.requests(PLAIN)[0].response_text  # type: ignore[union-attr]
    assert final.usage.output_tokens > 0
    assert _only_call(gateway)["stream"] is True


async def test_the_async_client_gets_a_plain_message_and_stream(gateway: Gateway) -> None:
    client = async_anthropic_client(gateway)
    async with client:
        message = await client.messages.create(
            model=PLAIN, max_tokens=200, messages=[{"role": "user", "content": "One?"}]
        )
        async with client.messages.stream(
            model=PLAIN, max_tokens=200, messages=[{"role": "user", "content": "Two?"}]
        ) as stream:
            text = "".join([delta async for delta in stream.text_stream])
            final = await stream.get_final_message()
    first, second = gateway.requests(PLAIN)
    assert message.content[0].text == first.response_text  # type: ignore[union-attr]
    assert text == second.response_text
    assert message.model == final.model == PLAIN_CONCRETE


def test_images_reach_the_model_as_image_parts(gateway: Gateway) -> None:
    with anthropic_client(gateway) as client:
        client.messages.create(
            model=PLAIN,
            max_tokens=100,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in these?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
                        },
                        {
                            "type": "image",
                            "source": {"type": "url", "url": "https://example.com/cat.jpg"},
                        },
                    ],
                }
            ],
        )
    (user,) = _only_call(gateway)["messages"]
    assert user["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]


def test_thinking_is_the_hosted_reasoning_budget(gateway: Gateway) -> None:
    with anthropic_client(gateway) as client:
        client.messages.create(
            model=PLAIN,
            max_tokens=4096,
            thinking={"type": "enabled", "budget_tokens": 2048},
            messages=[
                {"role": "user", "content": "Think about it."},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
                        {"type": "text", "text": "I thought."},
                    ],
                },
                {"role": "user", "content": "Again."},
            ],
        )
    body = _only_call(gateway)
    assert body["reasoning"] == {"max_tokens": 2048}
    # The earlier turn's thinking block is the model's own: not sent back as text.
    assert body["messages"][1] == {"role": "assistant", "content": "I thought."}


def test_a_tool_call_comes_back_as_tool_use_and_its_result_goes_out(gateway: Gateway) -> None:
    gateway.script(PLAIN, healthy(response_model=PLAIN_CONCRETE, tool_calls="auto"))
    question = {"role": "user", "content": "What is the weather in 'Paris'?"}
    with anthropic_client(gateway) as client:
        message = client.messages.create(
            model=PLAIN, max_tokens=200, tools=[WEATHER], messages=[question]
        )
        (use,) = [block for block in message.content if block.type == "tool_use"]
        assert message.stop_reason == "tool_use"
        assert use.name == "get_weather"
        assert use.input == {"city": "Paris"}
        answer = client.messages.create(
            model=PLAIN,
            max_tokens=200,
            tools=[WEATHER],
            messages=[
                question,
                {"role": "assistant", "content": [use.model_dump(exclude={"caller"})]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny"}],
                },
            ],
        )
    assert answer.stop_reason == "end_turn"
    tool_message = gateway.requests(PLAIN)[-1].body["messages"][-1]
    assert tool_message == {"role": "tool", "tool_call_id": use.id, "content": "Sunny"}


def test_plain_errors_are_in_anthropics_shape_with_availability(gateway: Gateway) -> None:
    gateway.script(PLAIN, ModelScript(status_code=429, retry_after=3))
    with anthropic_client(gateway) as client:
        with pytest.raises(anthropic.RateLimitError) as limited:
            client.messages.create(
                model=PLAIN, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
        error = limited.value.body["error"]  # type: ignore[index]
        assert error["type"] == "rate_limit_error"
        assert error["availability"]["code"] == "capacity_exhausted"
        assert error["availability"]["retry_after"] == 3
        stream = client.messages.create(
            model=PLAIN, max_tokens=10, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(anthropic.APIStatusError) as raised:
            list(stream)
        assert raised.value.body["error"]["availability"]["code"] == "capacity_exhausted"  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 10}}, "budget_tokens"),
        ({"top_k": 5}, "top_k"),
    ],
)
def test_what_cannot_be_relayed_is_a_400_naming_it(
    gateway: Gateway, extra: dict[str, Any], named: str
) -> None:
    with anthropic_client(gateway) as client, pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model=PLAIN,
            max_tokens=100,
            messages=[{"role": "user", "content": "hi"}],
            extra_body=extra,
        )
    assert named in refused.value.message
    assert gateway.upstream.requests == []  # refused before any upstream call


def test_a_document_block_is_refused_by_name(gateway: Gateway) -> None:
    document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "x"},
    }
    with anthropic_client(gateway) as client, pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model=PLAIN,
            max_tokens=100,
            messages=[{"role": "user", "content": [document]}],  # type: ignore[list-item]
        )
    assert "'document' block is not supported" in refused.value.message
    assert gateway.upstream.requests == []


def test_fusion_still_answers_with_the_plugin(gateway: Gateway) -> None:
    with anthropic_client(gateway) as client:
        client.messages.create(
            model=PLAIN,
            max_tokens=300,
            messages=[{"role": "user", "content": "hi"}],
            tool_choice={"type": "any"},
            extra_body={"plugins": [{"id": "fusion", "analysis_models": PANEL}]},
        )
    assert set(PANEL) <= gateway.models_called()
