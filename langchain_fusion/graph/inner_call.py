"""How the fusion parameters reach each inner call: a copy of the seat's model with the
temperature, the token limit, the depth header, `reasoning` and `cache_control` set."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_openai.chat_models.base import BaseChatOpenAI

from langchain_fusion.backends import DEPTH_HEADER
from langchain_fusion.contract.parameters import CacheControl, ReasoningConfig


def configure_inner_call(
    model: BaseChatModel,
    *,
    temperature: float | None = None,
    max_tokens: int | None = None,
    reasoning: ReasoningConfig | None = None,
    cache_control: CacheControl | None = None,
    depth: int | None = 1,
) -> BaseChatModel:
    """A copy of `model` set up for an inner call (`depth=None`: the outer model's call).

    Settings apply where the model has the matching field. OpenAI-compatible models also
    get the depth header (inner calls), streamed usage, and `reasoning` and `cache_control`
    in the body (pass `cache_control` only for an endpoint that knows it: OpenRouter).
    """
    fields = type(model).model_fields
    updates: dict[str, Any] = {}
    if temperature is not None and "temperature" in fields:
        updates["temperature"] = temperature
    if max_tokens is not None and "max_tokens" in fields:
        updates["max_tokens"] = max_tokens
    if isinstance(model, BaseChatOpenAI):
        updates["stream_usage"] = True
        if depth is not None:
            # The client's default headers are fixed when it is built; per-request headers
            # travel in the payload, which the OpenAI SDK accepts as `extra_headers`.
            kwargs = dict(model.model_kwargs)
            headers = {**kwargs.get("extra_headers", {}), DEPTH_HEADER: str(depth)}
            updates["model_kwargs"] = {**kwargs, "extra_headers": headers}
        body = dict(model.extra_body or {})
        if reasoning is not None:
            body["reasoning"] = reasoning.model_dump(exclude_none=True)
        if cache_control is not None:
            body["cache_control"] = cache_control.model_dump(exclude_none=True)
        if body != (model.extra_body or {}):
            updates["extra_body"] = body
    return model.model_copy(update=updates) if updates else model
