"""A `/v1/messages` request without fusion: the model itself on the backend, as the
hosted service relays a plain Anthropic Messages request.

The request has been read as the Chat Completions request it means
(`messages_request.py`); here it becomes that model's call (LangChain messages, the
caller's tools bound, `reasoning` in the body), checked against the policy with its own
worst case. The answer and its stream are Anthropic's (`messages_api.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.runnables import Runnable

from langchain_fusion.graph.budget import BudgetEstimate, approximate_tokens
from langchain_fusion.server.errors import invalid
from langchain_fusion.server.gateway import Gateway
from langchain_fusion.server.keys import Principal
from langchain_fusion.server.policy import plain_prompt_tokens


@dataclass
class PlainCall:
    """One model call: what runs, on what, with what, and its worst case."""

    runnable: Runnable[LanguageModelInput, BaseMessage]
    messages: list[BaseMessage]
    stop: list[str] | None
    kwargs: dict[str, Any]
    worst: BudgetEstimate


def plain_call(gateway: Gateway, principal: Principal, chat: dict[str, Any]) -> PlainCall:
    """The model call of a plain request (a 400 before any upstream call when it cannot
    be made; the policy's refusal when it may not)."""
    model = chat["model"]
    gateway.policy.check_models([model])
    try:
        messages = convert_to_messages(chat["messages"])
    except (ValueError, NotImplementedError) as error:
        raise invalid(f"messages: {error}", "messages") from None
    tools = chat.get("tools") or []
    limit = int(chat["max_tokens"])
    prompt = approximate_tokens(messages) + plain_prompt_tokens({"tools": tools})
    worst = gateway.policy.call_worst_case(model, prompt, limit)
    gateway.policy.check_budget(worst)
    kwargs: dict[str, Any] = {"max_tokens": limit}
    for name in ("temperature", "top_p"):
        if chat.get(name) is not None:
            kwargs[name] = chat[name]
    # In the body as the hosted API has them, for the backend (ChatOpenAI's own `reasoning`
    # would switch it to the Responses API, which an OpenAI-compatible backend may not
    # speak); the stop conditions are for the backend's own server tools.
    extra = {k: chat[k] for k in ("reasoning", "stop_server_tools_when") if chat.get(k)}
    if extra:
        kwargs["extra_body"] = extra
    chat_model = gateway.catalog.plain_model(model, principal.upstream_key)
    runnable: Runnable[LanguageModelInput, BaseMessage] = chat_model
    if tools:
        choice = chat.get("tool_choice")
        runnable = (
            chat_model.bind_tools(tools)
            if choice is None
            else chat_model.bind_tools(tools, tool_choice=choice)
        )
    stop = chat.get("stop")
    return PlainCall(runnable, messages, stop if isinstance(stop, list) else None, kwargs, worst)
