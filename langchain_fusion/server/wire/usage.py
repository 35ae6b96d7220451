"""Usage as the hosted API reports it: tokens, and `cost`, `cost_details` and
`server_tool_use_details` next to them, on both wire APIs."""

from __future__ import annotations

from typing import Any

from openai.types.completion_usage import CompletionUsage
from pydantic import ConfigDict

from langchain_fusion.server.meter import RunRecorder, Usage
from langchain_fusion.server.wire.base import WireModel


class InputTokensDetails(WireModel):
    cached_tokens: int


class OutputTokensDetails(WireModel):
    reasoning_tokens: int


class ResponsesUsage(WireModel):
    """`Usage` of the Responses API (OpenAI's, plus OpenRouter's cost fields)."""

    model_config = ConfigDict(extra="allow")

    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


def hosted_extras(usage: Usage, recorder: RunRecorder | None) -> dict[str, Any]:
    """`cost` (USD, when known), `cost_details` (when every inner call was priced from the
    price list, so that its parts add up to `cost`) and `server_tool_use_details` (fusion
    calls the outer model asked for, and those that ran)."""
    extras: dict[str, Any] = {}
    if usage.cost is not None:
        extras["cost"] = round(usage.cost, 10)
    if recorder is None:
        return extras
    split = _priced_split(recorder)
    if usage.cost is not None and split is not None:
        prompt, completion = split
        extras["cost_details"] = {
            "upstream_inference_cost": round(prompt + completion, 10),
            "upstream_inference_prompt_cost": round(prompt, 10),
            "upstream_inference_completions_cost": round(completion, 10),
        }
    calls = recorder.fusion_calls()
    if calls:
        extras["server_tool_use_details"] = {
            "tool_calls_requested": len(calls),
            "tool_calls_executed": sum(1 for call in calls if call.ran),
        }
    return extras


def _priced_split(recorder: RunRecorder) -> tuple[float, float] | None:
    prompt = completion = 0.0
    for model, entry in recorder.usage.items():
        price = recorder.prices.get(model)
        if price is None or entry.reported_cost or entry.unreported == 0:
            return None  # a reported cost: its split is the provider's, not ours to guess
        prompt += entry.input_tokens * price.prompt
        completion += entry.output_tokens * price.completion
    return prompt, completion


def chat_usage(usage: Usage, recorder: RunRecorder | None) -> CompletionUsage:
    body = usage.chat()
    body.pop("cost", None)
    return CompletionUsage(**body, **hosted_extras(usage, recorder))


def responses_usage(usage: Usage, recorder: RunRecorder | None) -> ResponsesUsage:
    body = usage.responses()
    body.pop("cost", None)
    return ResponsesUsage(**body, **hosted_extras(usage, recorder))
