"""`FusionTool`: the deliberation as a LangChain tool any agent can call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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
from langchain_core.tools import BaseTool, ToolException
from langgraph.prebuilt import InjectedState
from pydantic import BaseModel, Field, PrivateAttr, model_validator

from langchain_fusion import events
from langchain_fusion.backends import OpenAICompatibleBackend
from langchain_fusion.configuration import FusionConfiguration
from langchain_fusion.graph import DEPTH_METADATA_KEY, build_graph
from langchain_fusion.prompts import FUSION_TOOL_DESCRIPTION, FUSION_TOOL_NAME, format_tool_content
from langchain_fusion.result import FusionResult
from langchain_fusion.settings import FusionSettings


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


class FusionTool(FusionSettings, BaseTool):
    """A panel of models answers `prompt` in parallel; a judge compares the answers.

    The content the calling model reads holds the analysis and the answers; the artifact is
    the full `FusionResult`. Failures come back as a message naming the `failure_reason`,
    never as an exception that ends the agent's loop. In a LangGraph agent the panel also
    sees the conversation (system messages included), not only the prompt.

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
    temperature: float | None = None
    """Panel temperature (0 to 2); the judge always runs at 0."""
    max_invocations: int | None = Field(default=None, ge=1)
    """Deliberations per conversation (counted in the conversation itself: earlier fusion
    results in it); past the limit the tool says so instead of running again."""

    _configuration: FusionConfiguration = PrivateAttr()
    _graph: Any = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> FusionTool:
        # Resolved and compiled once here, so bad parameters fail at construction.
        self._configuration = self.fusion_configuration(
            backend=self.backend or OpenAICompatibleBackend(), temperature=self.temperature
        )
        self._graph = build_graph(self._configuration, name=self.name)
        return self

    @property
    def configuration(self) -> FusionConfiguration:
        """The resolved panel and judge."""
        return self._configuration

    def _run(
        self,
        prompt: str,
        messages: Sequence[BaseMessage] | None = None,
        *,
        config: RunnableConfig,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> tuple[str, FusionResult | None]:
        """Run the deliberation; returns (content for the model, `FusionResult`)."""
        if refusal := self._over_limit(messages):
            return refusal
        inner = self._inner_config(config, run_manager)
        state: dict[str, Any] = {}
        try:
            for mode, chunk in self._graph.stream(
                {"messages": deliberation_messages(prompt, messages)},
                inner,
                stream_mode=_stream_modes(),
            ):
                state = _forward(mode, chunk, state)
        except ValueError as error:  # refused before any call (input, budget): tell the agent
            raise ToolException(str(error)) from error
        return _tool_output(state)

    async def _arun(
        self,
        prompt: str,
        messages: Sequence[BaseMessage] | None = None,
        *,
        config: RunnableConfig,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
    ) -> tuple[str, FusionResult | None]:
        """Async `_run`. Cancelling the caller cancels every inner call."""
        if refusal := self._over_limit(messages):
            return refusal
        inner = self._inner_config(config, run_manager)
        state: dict[str, Any] = {}
        try:
            async for mode, chunk in self._graph.astream(
                {"messages": deliberation_messages(prompt, messages)},
                inner,
                stream_mode=_stream_modes(),
            ):
                state = _forward(mode, chunk, state)
        except ValueError as error:
            raise ToolException(str(error)) from error
        except asyncio.CancelledError:
            # Say so on the progress stream (a UI may still be listening), then let go.
            cancelled = FusionResult(status="error", failure_reason="cancelled")
            events.emit(events.COMPLETED, result=cancelled.model_dump(mode="json"))
            raise
        return _tool_output(state)

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
            "tags": ["nostream"],
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


def _stream_modes() -> list[str]:
    """Progress events only when the caller's graph has a listener for them."""
    return ["custom", "values"] if events.listening() else ["values"]


def _forward(mode: str, chunk: Any, state: dict[str, Any]) -> dict[str, Any]:
    """Re-emit a progress event to the caller's graph; keep the latest state."""
    if mode == "custom":
        # The deliberation runs as a nested graph, whose events the caller would only
        # see with `subgraphs=True`; forwarding puts them on the caller's own stream.
        fields = dict(chunk)
        events.emit(fields.pop("type"), **fields)
        return state
    return dict(chunk)


def _tool_output(state: dict[str, Any]) -> tuple[str, FusionResult]:
    result = state.get("result")
    if not isinstance(result, FusionResult):
        raise ToolException("the deliberation ended without a result")
    return format_tool_content(result), result
