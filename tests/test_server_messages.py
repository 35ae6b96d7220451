"""`POST /v1/messages` through the `anthropic` SDK: Anthropic's request, response and
stream shapes with the fusion plugin, and errors in Anthropic's shape (every byte also
checked against the hosted openapi.yaml's `/messages` schemas)."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
from messages_support import WEATHER, anthropic_client, async_anthropic_client
from test_server_support import (
    CONCRETE,
    OUTER,
    PANEL,
    QUESTION,
    WEATHER_QUESTION,
    Gateway,
    healthy,
    running_gateway,
)

from langchain_fusion.testing import ModelScript

PLUGIN = {"id": "fusion", "analysis_models": PANEL}


@pytest.fixture(scope="module")
def shared() -> Iterator[Gateway]:
    yield from running_gateway()


@pytest.fixture
def gateway(shared: Gateway) -> Gateway:
    shared.reset()
    return shared


def test_a_message_with_the_fusion_plugin(gateway: Gateway) -> None:
    with anthropic_client(gateway) as client:
        message = client.messages.create(
            model=OUTER,
            max_tokens=400,
            system="Answer in one paragraph.",
            messages=[{"role": "user", "content": QUESTION}],
            extra_body={"plugins": [PLUGIN]},
            tool_choice={"type": "any"},  # no tool of the caller's: it deliberates
        )
    assert message.model == CONCRETE
    assert message.role == "assistant"
    assert {r.model for r in gateway.upstream.requests} >= set(PANEL)
    assert message.usage.output_tokens > 0
    assert message.stop_reason in ("end_turn", "tool_use")


def test_a_streamed_message_has_anthropics_events(gateway: Gateway) -> None:
    with (
        anthropic_client(gateway) as client,
        client.messages.stream(
            model=OUTER,
            max_tokens=400,
            messages=[{"role": "user", "content": QUESTION}],
            extra_body={"plugins": [PLUGIN]},
        ) as stream,
    ):
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds
    assert final.model == CONCRETE
    text = "".join(block.text for block in final.content if block.type == "text")
    assert text == gateway.requests(OUTER)[-1].response_text
    assert final.usage.output_tokens > 0


def test_the_callers_tool_comes_back_as_tool_use(gateway: Gateway) -> None:
    gateway.script(OUTER, healthy(response_model=CONCRETE, tool_calls="auto"))
    with anthropic_client(gateway) as client:
        message = client.messages.create(
            model=OUTER,
            max_tokens=200,
            messages=[{"role": "user", "content": WEATHER_QUESTION}],
            tools=[WEATHER],
            extra_body={"plugins": [PLUGIN]},
        )
    (use,) = [block for block in message.content if block.type == "tool_use"]
    assert use.name == "get_weather"
    assert message.stop_reason == "tool_use"


def test_errors_are_in_anthropics_shape(gateway: Gateway) -> None:
    with anthropic_client(gateway) as client:
        with pytest.raises(anthropic.BadRequestError) as refused:
            client.messages.create(
                model=OUTER,
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"plugins": [PLUGIN], "thinking": {"type": "enabled"}},
            )
        assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
        assert "thinking" in refused.value.message
        assert gateway.upstream.requests == []
        gateway.script(OUTER, ModelScript(status_code=429))
        with pytest.raises(anthropic.RateLimitError) as limited:
            client.messages.create(
                model=OUTER,
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"plugins": [PLUGIN]},
            )
    body = limited.value.body
    assert body["type"] == "error"  # type: ignore[index]
    assert body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_a_failed_stream_ends_with_anthropics_error_event(gateway: Gateway) -> None:
    gateway.script(OUTER, ModelScript(status_code=429))
    with anthropic_client(gateway) as client:
        stream = client.messages.create(
            model=OUTER,
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"plugins": [PLUGIN]},
            stream=True,
        )
        with pytest.raises(anthropic.APIStatusError) as raised:
            list(stream)
    assert raised.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert raised.value.body["error"]["error_type"] == "rate_limit_exceeded"  # type: ignore[index]


async def test_the_async_client_streams_too(gateway: Gateway) -> None:
    client = async_anthropic_client(gateway)
    async with (
        client,
        client.messages.stream(
            model=OUTER,
            max_tokens=400,
            messages=[{"role": "user", "content": QUESTION}],
            extra_body={"plugins": [PLUGIN]},
        ) as stream,
    ):
        text = "".join([delta async for delta in stream.text_stream])
        final = await stream.get_final_message()
    assert text == gateway.requests(OUTER)[-1].response_text
    assert final.model == CONCRETE
