"""The research loop: a model with tools takes at most `max_tool_calls` tool steps.

A step is one model turn that asks for tools; the tools run and their results (errors
included, as tool messages) go back to the model. After the last allowed step the model is
asked again with no tools bound, so it must answer in text. Models that cannot call tools
(a small local model, say) simply answer on the first turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool

from langchain_fusion.errors import describe_error
from langchain_fusion.result import Source


class ToolRunner:
    """Runs a model's tool calls; every outcome, failures included, is a `ToolMessage`."""

    def __init__(self, tools: Sequence[BaseTool]) -> None:
        self.tools = {tool.name: tool for tool in tools}

    def run(self, message: AIMessage, config: RunnableConfig) -> list[ToolMessage]:
        """Run each call of `message` in turn."""
        return [self._run_one(call, config) for call in message.tool_calls]

    async def arun(self, message: AIMessage, config: RunnableConfig) -> list[ToolMessage]:
        """Run the calls of `message` concurrently."""
        return list(
            await asyncio.gather(*(self._arun_one(call, config) for call in message.tool_calls))
        )

    def _run_one(self, call: ToolCall, config: RunnableConfig) -> ToolMessage:
        tool = self.tools.get(call["name"])
        if tool is None:
            return self._unknown(call)
        try:
            return _as_tool_message(tool.invoke({**call, "type": "tool_call"}, config), call)
        except Exception as error:  # a tool's failure is the model's to read, not ours
            return _failed(call, error)

    async def _arun_one(self, call: ToolCall, config: RunnableConfig) -> ToolMessage:
        tool = self.tools.get(call["name"])
        if tool is None:
            return self._unknown(call)
        try:
            output = await tool.ainvoke({**call, "type": "tool_call"}, config)
            return _as_tool_message(output, call)
        except Exception as error:
            return _failed(call, error)

    def _unknown(self, call: ToolCall) -> ToolMessage:
        available = ", ".join(sorted(self.tools)) or "none"
        return ToolMessage(
            f"error: there is no tool named {call['name']!r}; available tools: {available}",
            tool_call_id=call["id"] or "",
            name=call["name"],
            status="error",
        )


def _as_tool_message(output: Any, call: ToolCall) -> ToolMessage:
    if isinstance(output, ToolMessage):
        return output
    return ToolMessage(str(output), tool_call_id=call["id"] or "", name=call["name"])


def _failed(call: ToolCall, error: Exception) -> ToolMessage:
    return ToolMessage(
        f"error: {call['name']} failed: {describe_error(error)}",
        tool_call_id=call["id"] or "",
        name=call["name"],
        status="error",
    )


def sources_of(messages: Iterable[BaseMessage]) -> list[Source]:
    """Pages retrieved: tool results' `Source` artifacts and OpenRouter's URL citations."""
    found: list[Source] = []
    for message in messages:
        if isinstance(message, ToolMessage) and isinstance(message.artifact, list):
            found += [item for item in message.artifact if isinstance(item, Source)]
        for annotation in message.response_metadata.get("annotations") or []:
            citation = annotation.get("url_citation") if isinstance(annotation, dict) else None
            if isinstance(citation, dict) and isinstance(citation.get("url"), str):
                found.append(Source(url=citation["url"], title=citation.get("title") or None))
    return found


def deduplicate_sources(sources: Iterable[Source]) -> list[Source]:
    """One entry per URL, in first-seen order, keeping the first title found."""
    by_url: dict[str, Source] = {}
    for source in sources:
        known = by_url.get(source.url)
        if known is None or (known.title is None and source.title):
            by_url[source.url] = source
    return list(by_url.values())
