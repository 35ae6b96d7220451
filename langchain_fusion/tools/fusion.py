"""`FusionTool`: the deliberation as a LangChain tool any agent can call."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, InjectedToolArg, ToolException
from langgraph.config import get_stream_writer
from langgraph.constants import TAG_NOSTREAM
from langgraph.prebuilt import InjectedState, ToolRuntime
from pydantic import BaseModel, Field

from langchain_fusion.backends import OpenAICompatibleBackend
from langchain_fusion.contract import events
from langchain_fusion.contract.errors import DeliberationRefused
from langchain_fusion.contract.parameters import FusionParameterError
from langchain_fusion.contract.result import FusionResult
from langchain_fusion.graph import DEPTH_METADATA_KEY, FusionGraph, FusionSetup, build_graph
from langchain_fusion.graph.context import FusionContext
from langchain_fusion.graph.progress import STREAM_PANEL_TOKENS_KEY, Writer
from langchain_fusion.graph.prompts import (
    FUSION_TOOL_DESCRIPTION,
    FUSION_TOOL_NAME,
    format_tool_content,
)
from langchain_fusion.tools.relay import ProgressRelay
from langchain_fusion.tools.settings import FusionSettings


class DeliberationRecursionError(ToolException):
    """Fusion was invoked from inside a deliberation: bounded to one level, as hosted."""


class FusionToolInput(BaseModel):
    """What the calling model passes: a self-contained prompt."""

    prompt: str = Field(
        description="The question or task for the panel, self-contained, with any context "
        "the panel needs."
    )
    messages: Annotated[list[AnyMessage] | None, InjectedState("messages")] = None
    """In a LangGraph agent, the conversation so far (hidden from the model)."""
    runtime: Annotated[Any, InjectedToolArg] = None
    """In a LangGraph agent, the tool call's `ToolRuntime` (hidden from the model): the
    call's id (one fusion per turn) and the agent's stream writer."""


@dataclass
class _Request:
    """A call that will deliberate: the graph's input, its config and its stream modes."""

    input: dict[str, Any]
    config: RunnableConfig
    graph: FusionGraph
    context: FusionContext
    relay: ProgressRelay
    """Where the caller's progress events go."""
    state: dict[str, Any] = field(default_factory=dict)
    """The graph's latest state, as it streams."""

    @property
    def graph_call(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "config": self.config,
            "context": self.context,
            "stream_mode": ["custom", "values"],
        }


@contextmanager
def _refusals_for_the_agent() -> Iterator[None]:
    """A deliberation refused before any call (the input, the budget) becomes a tool error
    the agent reads; nothing else is caught."""
    try:
        yield
    except (DeliberationRefused, FusionParameterError) as error:
        raise ToolException(str(error)) from error


class FusionTool(FusionSettings, BaseTool):
    """A panel of models answers `prompt` in parallel; a judge compares the answers.

    The content the calling model reads holds the analysis and the answers; the artifact is
    the full `FusionResult`. Failures come back as a message naming the `failure_reason`,
    never as an exception that ends the agent's loop. In a LangGraph agent the panel also
    sees the conversation (system messages included), not only the prompt. As on the hosted
    service, one fusion runs per turn: a second fusion call in the same model message gets
    `failure_reason: fusion_invocation_capped`.

    Example:
        ```python
        from langchain.agents import create_agent
        from langchain_fusion import FusionTool

        fusion = FusionTool(analysis_models=["openai/gpt-4.1", "deepseek/deepseek-v3.2"])
        agent = create_agent("openai:gpt-4.1", tools=[fusion])
        ```
    """

    name: str = FUSION_TOOL_NAME
    description: str = FUSION_TOOL_DESCRIPTION
    args_schema: type[BaseModel] = FusionToolInput
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_tool_error: bool = True
    max_invocations: int | None = Field(default=None, ge=1)
    """Deliberations per conversation (counted in the conversation itself: earlier fusion
    results in it); past the limit the tool says so instead of running again."""

    @property
    def graph(self) -> FusionGraph:
        """The deliberation graph of the current fields (built on first use, and anew for
        a copy with other fields)."""
        return self.built(self._build_graph)

    def _build_graph(self) -> FusionGraph:
        setup = self.fusion_setup(backend=self.backend or OpenAICompatibleBackend())
        return build_graph(setup, name=self.name)

    @property
    def configuration(self) -> FusionSetup:
        """The resolved configuration: parameters, limits, the panel's seats and the judge."""
        return self.graph.setup

    @property
    def temperature(self) -> float | None:
        """Deprecated: `panel_temperature`."""
        warnings.warn(
            "FusionTool.temperature is deprecated: use panel_temperature",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.panel_temperature

    def _run(
        self,
        prompt: str,
        messages: Sequence[BaseMessage] | None = None,
        runtime: ToolRuntime | None = None,
        *,
        config: RunnableConfig,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> tuple[str, FusionResult | None]:
        """Run the deliberation; returns (content for the model, `FusionResult`)."""
        request = self._request(prompt, messages, runtime, config, run_manager)
        if not isinstance(request, _Request):
            return request
        with _refusals_for_the_agent():
            for mode, chunk in request.graph.stream(**request.graph_call):
                if mode == "custom":
                    request.relay.forward(chunk)
                else:
                    request.state = chunk
        return _tool_output(request.state)

    async def _arun(
        self,
        prompt: str,
        messages: Sequence[BaseMessage] | None = None,
        runtime: ToolRuntime | None = None,
        *,
        config: RunnableConfig,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
    ) -> tuple[str, FusionResult | None]:
        """Async `_run`. Cancelling the caller cancels every inner call."""
        request = self._request(prompt, messages, runtime, config, run_manager)
        if not isinstance(request, _Request):
            return request
        try:
            with _refusals_for_the_agent():
                async for mode, chunk in request.graph.astream(**request.graph_call):
                    if mode == "custom":
                        await request.relay.aforward(chunk)
                    else:
                        request.state = chunk
        except asyncio.CancelledError:
            # Say so on the progress stream (a UI may still be listening), then let go.
            cancelled = FusionResult(status="error", failure_reason="cancelled")
            event = {"type": events.COMPLETED, "result": cancelled.model_dump(mode="json")}
            await asyncio.shield(request.relay.aforward(event))
            raise
        return _tool_output(request.state)

    def _request(
        self,
        prompt: str,
        messages: Sequence[BaseMessage] | None,
        runtime: ToolRuntime | None,
        config: RunnableConfig,
        run_manager: CallbackManagerForToolRun | AsyncCallbackManagerForToolRun | None,
    ) -> _Request | tuple[str, FusionResult | None]:
        """What to deliberate on, or why not to: the turn's cap, `max_invocations`."""
        tool_call_id = runtime.tool_call_id if runtime is not None else None
        if refusal := self._capped(messages or (), tool_call_id) or self._over_limit(messages):
            return refusal
        writer = runtime.stream_writer if runtime is not None else _ambient_writer()
        graph = self.graph
        # The panel's tokens when `stream_panel_tokens` says so, or when the caller that
        # runs this tool streams and says so in its config (a streamed `ChatFusion`).
        asked = (config.get("configurable") or {}).get(STREAM_PANEL_TOKENS_KEY)
        return _Request(
            input={"messages": deliberation_messages(prompt, messages)},
            config=self._inner_config(config, run_manager),
            graph=graph,
            context=graph.new_context({"configurable": {STREAM_PANEL_TOKENS_KEY: asked}}),
            relay=ProgressRelay(writer, run_manager),
        )

    def _capped(
        self, messages: Sequence[BaseMessage], tool_call_id: str | None
    ) -> tuple[str, FusionResult] | None:
        """One fusion per turn: an earlier fusion call in this call's message wins."""
        if tool_call_id is None:
            return None
        for message in reversed(messages):
            if not isinstance(message, AIMessage):
                continue
            calls = [call["id"] for call in message.tool_calls if call["name"] == self.name]
            if tool_call_id not in calls:
                continue
            if calls.index(tool_call_id) == 0:
                return None
            capped = FusionResult(
                status="error",
                failure_reason="fusion_invocation_capped",
                failure_detail="one fusion per turn: this turn already deliberates in an "
                f"earlier {self.name} call",
            )
            return format_tool_content(capped), capped
        return None

    def _over_limit(
        self, messages: Sequence[BaseMessage] | None
    ) -> tuple[str, FusionResult | None] | None:
        if self.max_invocations is None:
            return None
        done = count_deliberations(messages or (), self.name)
        if done < self.max_invocations:
            return None
        return (
            f"Fusion has already run {done} time(s) in this conversation "
            f"(max_invocations={self.max_invocations}), so it did not run again. Answer "
            "from the earlier deliberation's results above.",
            None,
        )

    def _inner_config(
        self,
        config: RunnableConfig,
        run_manager: CallbackManagerForToolRun | AsyncCallbackManagerForToolRun | None,
    ) -> RunnableConfig:
        metadata = dict(config.get("metadata") or {})
        if run_manager is not None:
            metadata.update(run_manager.metadata)
        if metadata.get(DEPTH_METADATA_KEY):
            raise DeliberationRecursionError(
                "fusion cannot be invoked inside a deliberation: panel and judge models never "
                "get the fusion tool (x-openrouter-fusion-depth), so deliberation stays one "
                "level deep"
            )
        return {
            "callbacks": run_manager.get_child() if run_manager else None,
            "run_name": self.name,
            # The agent's `messages` stream shows its own model's tokens, not the panel's:
            # progress reaches it as custom events instead.
            "tags": [TAG_NOSTREAM],
        }


def count_deliberations(messages: Sequence[BaseMessage], tool_name: str = FUSION_TOOL_NAME) -> int:
    """Deliberations already in a conversation: fusion tool results, and ChatFusion answers
    that carry a `fusion_result`."""
    return sum(
        1
        for message in messages
        if (
            isinstance(message, ToolMessage)
            and message.name == tool_name
            and message.status != "error"
        )
        or (isinstance(message, AIMessage) and "fusion_result" in message.response_metadata)
    )


def deliberation_messages(
    prompt: str, conversation: Sequence[BaseMessage] | None = None
) -> list[BaseMessage]:
    """The panel's input: the conversation's text turns, then the prompt.

    Tool plumbing (tool calls, tool results) is left out: the panel answers, it does not
    replay the agent's steps. The prompt is not repeated when it is the last user turn.
    """
    if not prompt.strip():
        raise ToolException("fusion needs a non-empty prompt")
    turns: list[BaseMessage] = []
    for message in conversation or ():
        if isinstance(message, ToolMessage):
            continue
        if isinstance(message, AIMessage):
            if message.text.strip():
                turns.append(AIMessage(message.text))
            continue
        turns.append(message)
    last = turns[-1] if turns else None
    if not (isinstance(last, HumanMessage) and last.text.strip() == prompt.strip()):
        turns.append(HumanMessage(prompt))
    return turns


def _ambient_writer() -> Writer | None:
    """The stream writer of the graph run we are inside; None outside one."""
    try:
        return get_stream_writer()
    except (RuntimeError, KeyError):
        return None


def _tool_output(state: dict[str, Any]) -> tuple[str, FusionResult]:
    result = state.get("result")
    if not isinstance(result, FusionResult):
        raise ToolException("the deliberation ended without a result")
    return format_tool_content(result), result
