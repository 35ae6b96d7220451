"""Chat Completions on the wire: the `openai` SDK's `ChatCompletion` and
`ChatCompletionChunk`, with OpenRouter's additions (`reasoning_details`, `fusion`, usage
cost, `openrouter_metadata`) as the extra fields those models keep.

`dump` leaves out every field that was not set, so no chunk carries
`"system_fingerprint": null` (the hosted chunk schema allows a string or no field).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage
from openai import BaseModel as OpenAIModel
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage

from langchain_fusion.graph.prompts import FUSION_TOOL_NAME
from langchain_fusion.server.errors import GatewayError
from langchain_fusion.server.wire.errors import stream_error


def dump(model: OpenAIModel) -> dict[str, Any]:
    """The SDK model as JSON, without the fields nobody set."""
    data: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True)
    return data


def tool_calls(message: BaseMessage) -> list[dict[str, Any]]:
    """The caller's tool calls (not the fusion tool's, which the server ran)."""
    return [
        {
            "id": call["id"] or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["args"])},
        }
        for call in getattr(message, "tool_calls", None) or []
        if call["name"] != FUSION_TOOL_NAME
    ]


def finish_reason(message: BaseMessage, has_tool_calls: bool) -> str:
    if has_tool_calls:
        return "tool_calls"
    reason = message.response_metadata.get("finish_reason")
    return reason if reason in ("stop", "length", "content_filter") else "stop"


def completion(
    *,
    ident: str,
    created: int,
    model: str,
    message: BaseMessage,
    records: list[dict[str, Any]],
    usage: CompletionUsage,
    extras: Mapping[str, Any],
) -> ChatCompletion:
    """The whole answer: the assistant message (text, the caller's tool calls, each fusion
    call as a `reasoning_details` record), its finish reason and usage."""
    calls = tool_calls(message)
    body: dict[str, Any] = {"role": "assistant", "content": message.text or None, "refusal": None}
    if calls:
        body["tool_calls"] = calls
    elif body["content"] is None:
        body["content"] = ""
    if records:
        body["reasoning_details"] = records
    choice = {
        "index": 0,
        "message": body,
        "logprobs": None,
        "finish_reason": finish_reason(message, bool(calls)),
    }
    return ChatCompletion(
        id=ident,
        object="chat.completion",
        created=created,
        model=model,
        choices=[choice],  # validated into the SDK's Choice
        usage=usage,
        system_fingerprint=None,  # required (nullable) in a whole completion
        **extras,
    )


@dataclass
class ChunkWriter:
    """The chunks of one streamed completion: one id, one creation time, one model."""

    ident: str
    created: int
    model: str

    def chunk(self, choices: list[dict[str, Any]], **extras: Any) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.ident,
            object="chat.completion.chunk",
            created=self.created,
            model=self.model,
            choices=choices,  # validated into the SDK's Choice
            **extras,
        )

    def delta(self, content: dict[str, Any], finish: str | None = None) -> ChatCompletionChunk:
        return self.chunk([{"index": 0, "delta": content, "finish_reason": finish}])

    def error(self, failure: GatewayError) -> dict[str, Any]:
        """A failure after the headers went out, as the hosted API streams it: a chunk with
        `error` (its `code` the HTTP status, `metadata.error_type`, `availability`) and a
        choice finished with `error` (a reason OpenAI's chunk type does not list: a dict)."""
        return {
            "id": self.ident,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
            "error": stream_error(failure),
        }
