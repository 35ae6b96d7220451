"""How a seat's model meets its tools: research tools for the panel, the analysis schema
(and tools) for the judge.

On OpenRouter the hosted web tools run server-side within one call; elsewhere the tools we
run ourselves (the caller's `research_tools`, or local stand-ins) are bound to the model
and run by LangGraph's `ToolNode`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_openai.chat_models.base import BaseChatOpenAI
from langgraph.prebuilt import ToolNode

from langchain_fusion.backends import OpenAICompatibleBackend, runs_hosted_tools
from langchain_fusion.contract.errors import describe_error
from langchain_fusion.contract.parameters import ToolSpec

logger = logging.getLogger(__name__)

# The hosted tool types that have a local counterpart in `langchain_fusion.web`.
WEB_SEARCH = "openrouter:web_search"
WEB_FETCH = "openrouter:web_fetch"


def research_tool_node(tools: Sequence[BaseTool]) -> ToolNode | None:
    """LangGraph's tool runner: the calls of one step run concurrently, and a tool's
    failure (or an unknown tool) comes back to the model as an error tool message."""
    if not tools:
        return None
    return ToolNode(list(tools), handle_tool_errors=_tool_error, name="research_tools")


def _tool_error(error: Exception) -> str:
    return f"error: {describe_error(error)}"


def local_research_tools(
    specs: Sequence[ToolSpec], research_tools: Sequence[BaseTool] | None
) -> list[BaseTool]:
    """The tools we run ourselves: the caller's, else local stand-ins for the web tools."""
    if not specs:
        return []  # `tools: []` turns research off
    if research_tools is not None:
        return list(research_tools)
    from langchain_fusion.web import WebFetchTool, WebSearchTool

    tools: list[BaseTool] = []
    for spec in specs:
        if spec.type == WEB_SEARCH:
            search = WebSearchTool.from_env()
            if search is not None:  # no provider configured: search is simply not offered
                tools.append(search)
        elif spec.type == WEB_FETCH:
            tools.append(WebFetchTool())
        else:
            logger.warning(
                "tool type %r has no local counterpart; it is only sent to OpenRouter", spec.type
            )
    return tools


def _server_tools(specs: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [spec.model_dump(exclude_none=True) for spec in specs]


def bind_panel_tools(
    model: BaseChatModel,
    specs: Sequence[ToolSpec],
    local_tools: Sequence[BaseTool],
    backend: OpenAICompatibleBackend,
) -> tuple[
    Runnable[LanguageModelInput, BaseMessage], Runnable[LanguageModelInput, BaseMessage] | None
]:
    """(the answering model, the researching model) for one panel seat."""
    if specs and not local_tools and runs_hosted_tools(model, backend):
        # OpenRouter runs its web tools itself, within the one call.
        return _chat_completions(model).bind(tools=_server_tools(specs)), None
    if not local_tools:
        return model, None
    try:
        return model, model.bind_tools(local_tools)
    except NotImplementedError:  # a model class without tool calling answers without tools
        return model, None


def bind_judge_tools(
    judge: BaseChatModel,
    schema: dict[str, Any],
    specs: Sequence[ToolSpec],
    local_tools: Sequence[BaseTool],
    backend: OpenAICompatibleBackend,
) -> Runnable[LanguageModelInput, BaseMessage] | None:
    """The judge with tools and the analysis schema in one request (OpenAI-compatible only).

    The schema travels in the request body rather than through `with_structured_output`:
    the OpenAI SDK's parsing path refuses non-function and non-strict tools. The reply is
    read by the same healing parser.
    """
    if not specs or not isinstance(judge, BaseChatOpenAI):
        return None
    if local_tools:
        tools: list[dict[str, Any]] = [convert_to_openai_tool(t) for t in local_tools]
    elif runs_hosted_tools(judge, backend):
        tools = _server_tools(specs)
        judge = judge.model_copy(update={"use_responses_api": False})  # see _chat_completions
    else:
        return None
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "FusionAnalysis", "schema": schema},
    }
    body = {**(judge.extra_body or {}), "response_format": response_format}
    return judge.bind(tools=tools, extra_body=body)


def _chat_completions(model: BaseChatModel) -> BaseChatModel:
    """Keep OpenRouter's server tools on Chat Completions: `langchain-openai` would switch
    to the Responses API on seeing tool types that are not functions."""
    if isinstance(model, BaseChatOpenAI):
        return model.model_copy(update={"use_responses_api": False})
    return model


def structured_judge(
    model: BaseChatModel, schema: dict[str, Any]
) -> Runnable[LanguageModelInput, Any]:
    # OpenAI-compatible servers get `response_format: json_schema`, which constrained
    # decoders (llama.cpp) enforce; other providers use their own structured-output method.
    if isinstance(model, BaseChatOpenAI):
        return model.with_structured_output(schema, method="json_schema", include_raw=True)
    try:
        return model.with_structured_output(schema, include_raw=True)
    except NotImplementedError:
        # A text-only model: the prompt asks for the JSON and the healing parser reads it.
        return model | RunnableLambda(_as_raw_output, name="raw_output")


def _as_raw_output(message: BaseMessage) -> dict[str, Any]:
    return {"raw": message, "parsed": None, "parsing_error": None}
