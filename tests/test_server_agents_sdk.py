"""The OpenAI Agents SDK (`openai-agents`) against the gateway, on both of its model
classes, run and streamed: the answer, usage (it sends no `stream_options` to a base URL
that is not OpenAI's, so a stream must carry usage unasked, as hosted) and the concrete
model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    set_tracing_disabled,
)
from test_server_support import CONCRETE, OUTER, PANEL, QUESTION, Gateway, running_gateway

SETTINGS = ModelSettings(extra_body={"plugins": [{"id": "fusion", "analysis_models": PANEL}]})


@pytest.fixture(scope="module")
def shared() -> Iterator[Gateway]:
    set_tracing_disabled(True)  # its traces would go to OpenAI's servers
    yield from running_gateway()


@pytest.fixture
def gateway(shared: Gateway) -> Gateway:
    shared.reset()
    return shared


def _agent(gateway: Gateway, kind: type[Any]) -> Agent[Any]:
    client = openai.AsyncOpenAI(base_url=gateway.url, api_key="sk-client", max_retries=0)
    model = kind(model=OUTER, openai_client=client)
    return Agent(
        name="analyst", instructions="Answer briefly.", model=model, model_settings=SETTINGS
    )


@pytest.mark.parametrize("kind", [OpenAIChatCompletionsModel, OpenAIResponsesModel])
async def test_a_run_gets_the_answer_and_its_usage(gateway: Gateway, kind: type[Any]) -> None:
    result = await Runner.run(_agent(gateway, kind), QUESTION)
    assert result.final_output == gateway.requests(OUTER)[-1].response_text
    usage = result.context_wrapper.usage
    assert usage.requests == 1
    assert usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


@pytest.mark.parametrize("kind", [OpenAIChatCompletionsModel, OpenAIResponsesModel])
async def test_a_streamed_run_gets_usage_unasked_and_the_concrete_model(
    gateway: Gateway, kind: type[Any]
) -> None:
    result = Runner.run_streamed(_agent(gateway, kind), QUESTION)
    raw = [
        event.data async for event in result.stream_events() if event.type == "raw_response_event"
    ]
    assert result.final_output == gateway.requests(OUTER)[-1].response_text
    assert result.context_wrapper.usage.output_tokens > 0  # no stream_options was sent
    if kind is OpenAIResponsesModel:  # the gateway's own events, as the SDK parsed them
        snapshots = [
            e.response for e in raw if e.type.startswith("response.") and hasattr(e, "response")
        ]
        assert [s.model for s in snapshots] == [CONCRETE] * len(snapshots)
        assert raw[-1].type == "response.completed"
