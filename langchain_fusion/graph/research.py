"""The research loop: a model with tools takes at most `max_tool_calls` tool steps.

A step is one model turn that asks for tools; LangGraph's `ToolNode` runs them (the calls
of one step concurrently) and their results, errors included, go back to the model as tool
messages. After the last allowed step the model is asked again with no tools bound, so it
must answer in text. Models that cannot call tools (a small local model, say) simply answer
on the first turn.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage
from langgraph.prebuilt import ToolNode

from langchain_fusion.contract.result import Source, TokenUsage
from langchain_fusion.graph.context import RunClock
from langchain_fusion.graph.steps import Call, Plan


class ResearchTurn:
    """One model's research loop: the transcript, the steps taken, usage and sources."""

    def __init__(
        self, transcript: list[BaseMessage], max_steps: int, clock: RunClock, label: str
    ) -> None:
        self.transcript = transcript
        self.clock = clock
        self.label = label
        self.max_steps = max_steps
        self.steps = 0
        self.usage = TokenUsage()
        self.sources: list[Source] = []
        self.reported: str | None = None
        """The concrete model that answered, as the backend last reported it."""

    @property
    def may_research(self) -> bool:
        return self.steps < self.max_steps

    def count(self, message: Any) -> None:
        """Count a finished call: its usage (in the run's ledger too) and its citations."""
        if not isinstance(message, BaseMessage):
            return
        usage = usage_of(message)
        self.usage += usage
        self.clock.spend(self.label, usage)
        self.sources += sources_of([message])
        self.reported = reported_model(message) or self.reported

    def wants_tools(self, message: Any) -> AIMessage | None:
        """The tool-calling turn to answer, if `message` asked for tools; it joins the
        transcript (with the provider's extra fields, which some need sent back)."""
        calls = getattr(message, "tool_calls", None)
        if not isinstance(message, AIMessage) or not calls:
            return None
        self.steps += 1
        turn = AIMessage(
            content=message.content,
            tool_calls=calls,
            additional_kwargs=message.additional_kwargs,
        )
        self.transcript.append(turn)
        return turn

    def step_report(self, turn: AIMessage) -> dict[str, Any]:
        """What a research step is about to run, for the progress stream: the step, and
        each tool call's name and query (its `query` or `url` argument, cut short)."""
        return {
            "step": self.steps,
            "max_steps": self.max_steps,
            "tool_calls": [
                {"name": call["name"], "query": _query_of(call["args"])} for call in turn.tool_calls
            ],
        }

    def run_tools(self, tools: ToolNode, turn: AIMessage) -> Plan[None]:
        """Run the turn's tool calls; every outcome, failures included, joins the transcript."""
        known = [call for call in turn.tool_calls if call["name"] in tools.tools_by_name]
        unknown = [unknown_tool(call, tools) for call in turn.tool_calls if call not in known]
        results: list[ToolMessage] = []
        if known:
            output = yield Call(
                tools, {"messages": [turn.model_copy(update={"tool_calls": known})]}
            )
            results = list(output["messages"] if isinstance(output, dict) else output)
        by_id = {message.tool_call_id: message for message in [*results, *unknown]}
        answered = [by_id[call["id"] or ""] for call in turn.tool_calls]
        self.transcript += answered
        self.sources += sources_of(answered)


_QUERY_CHARS = 200


def _query_of(args: Any) -> str:
    """The argument a person reads a tool call by: `query`, `url`, else the first string."""
    if not isinstance(args, dict):
        return ""
    strings = [value for value in args.values() if isinstance(value, str)]
    value = args.get("query") or args.get("url") or (strings[0] if strings else "")
    text = str(value)
    return text if len(text) <= _QUERY_CHARS else text[: _QUERY_CHARS - 1] + "…"


def unknown_tool(call: ToolCall, tools: ToolNode) -> ToolMessage:
    available = ", ".join(sorted(tools.tools_by_name)) or "none"
    return ToolMessage(
        f"error: there is no tool named {call['name']!r}; available tools: {available}",
        tool_call_id=call["id"] or "",
        name=call["name"],
        status="error",
    )


def usage_of(message: Any) -> TokenUsage:
    """Tokens and cost of one model call, from its message's metadata."""
    if not isinstance(message, BaseMessage):
        return TokenUsage()
    metadata = getattr(message, "usage_metadata", None) or {}
    cost = message.response_metadata.get("cost")
    return TokenUsage(
        input_tokens=metadata.get("input_tokens", 0),
        output_tokens=metadata.get("output_tokens", 0),
        total_tokens=metadata.get("total_tokens", 0),
        cost=float(cost) if isinstance(cost, (int, float)) else None,
    )


def reported_model(message: Any) -> str | None:
    """The concrete model that answered, as the backend reports it."""
    if not isinstance(message, BaseMessage):
        return None
    name = message.response_metadata.get("model_name")
    return name if isinstance(name, str) and name else None


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
