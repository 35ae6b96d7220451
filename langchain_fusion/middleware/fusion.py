"""`FusionMiddleware`: fusion for agents built with `langchain.agents.create_agent`.

Built on LangChain's own middleware hooks (`tools`, `state_schema`, `before_model`,
`wrap_model_call`, `wrap_tool_call`) rather than a hand-written agent loop, so it composes
with every other middleware. The tool itself is a `FusionTool`, with its parameters and
its validation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, NotRequired, TypeAlias, cast

from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ModelRequest,
    ModelResponse,
    ToolCallRequest,
)
from langchain.agents.middleware.types import ModelCallResult, OmitFromInput
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.messages.tool import ToolCall
from langchain_core.tools import BaseTool
from langgraph.runtime import Runtime
from langgraph.types import Command

from langchain_fusion.contract.result import FusionResult
from langchain_fusion.middleware.stream import FusionProgressTransformer
from langchain_fusion.middleware.turn import (
    CAPPED,
    capped_message,
    current_turn,
    deliberated,
    forced_call,
    turn_prompt,
)
from langchain_fusion.tools.fusion import FusionTool

When: TypeAlias = Literal["model_decides", "always"] | Callable[[Mapping[str, Any]], bool]
"""Who decides to deliberate: the agent's model, every user turn, or your function."""
_WHEN_WORDS = ("model_decides", "always")


class FusionAgentState(AgentState[Any]):
    """The agent's state with this turn's deliberation."""

    fusion: NotRequired[Annotated[FusionResult | None, OmitFromInput]]
    """The `FusionResult` of the current turn's deliberation; `None` when the turn has not
    deliberated."""


class FusionMiddleware(AgentMiddleware[FusionAgentState, Any, Any]):
    """Gives an agent's model the fusion tool, one deliberation per turn.

    Every keyword of `FusionTool` (`analysis_models`, `judge_model`, `preset`,
    `max_tool_calls`, `temperature`, `backend`, limits, ...) is accepted and validated as
    `FusionTool` validates it; or pass a ready `FusionTool` as `tool`.

    - One fusion per turn (a turn: everything after the user's last message): a second
      fusion call in the turn gets `failure_reason: fusion_invocation_capped` and costs
      nothing.
    - After a deliberation the model is not offered fusion again in that turn
      (`offer_again_in_turn=True` keeps offering it; a call is then capped).
    - `state["fusion"]` holds the turn's `FusionResult`; the progress events go to the
      agent's custom stream (`stream_mode="custom"`).
    - `when`: `"model_decides"` (default) offers the tool to the model; `"always"`
      deliberates on every user turn before the model answers (the model then answers
      from the result and is not offered the tool); a callable gets the agent's state
      before each model call of a turn that has not deliberated yet, and deliberates
      when it returns True (the model is not offered the tool either).

    Example:
        ```python
        from langchain.agents import create_agent
        from langchain_fusion import FusionMiddleware

        agent = create_agent(
            "openai:gpt-4.1",
            tools=[get_weather],
            middleware=[FusionMiddleware(analysis_models=["openai/gpt-4.1", "x-ai/grok-4"])],
        )
        ```
    """

    state_schema = FusionAgentState
    # `agent.stream_events(..., version="v3")` shows the progress on `run.fusion`.
    transformers = (FusionProgressTransformer,)

    def __init__(
        self,
        *,
        when: When = "model_decides",
        offer_again_in_turn: bool = False,
        tool: FusionTool | None = None,
        **fusion: Any,
    ) -> None:
        super().__init__()
        if not callable(when) and when not in _WHEN_WORDS:
            raise ValueError(
                f"when must be 'model_decides', 'always' or a function of the agent's state "
                f"that returns True to deliberate, got {when!r}"
            )
        if tool is not None and fusion:
            raise TypeError(
                "pass either a ready FusionTool as tool= or its keywords "
                f"({', '.join(sorted(fusion))}), not both"
            )
        self.when = when
        self.offer_again_in_turn = offer_again_in_turn
        self.fusion_tool = tool if tool is not None else FusionTool(**fusion)
        self.tools = [self.fusion_tool]

    # --- before the model: the turn's bookkeeping, a deliberation the model did not choose

    def before_model(self, state: FusionAgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        update = self._new_turn(state)
        if (call := self._forced(state)) is None:
            return update
        return {**(update or {}), **self._forced_update(call, self.fusion_tool.invoke(call))}

    async def abefore_model(
        self, state: FusionAgentState, runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        update = self._new_turn(state)
        if (call := self._forced(state)) is None:
            return update
        message = await self.fusion_tool.ainvoke(call)
        return {**(update or {}), **self._forced_update(call, message)}

    # --- the model call: fusion offered or not --------------------------------------------

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelCallResult[Any]:
        return handler(self._offer(request))

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelCallResult[Any]:
        return await handler(self._offer(request))

    # --- the tool call: capped, or run and recorded in the state -------------------------

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        if not self._is_fusion(request):
            return handler(request)
        if self._turn_has_deliberated(request.state):
            return capped_message(request.tool_call, self.fusion_tool.name)
        return _recorded(handler(request))

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        if not self._is_fusion(request):
            return await handler(request)
        if self._turn_has_deliberated(request.state):
            return capped_message(request.tool_call, self.fusion_tool.name)
        return _recorded(await handler(request))

    # --- the rules -----------------------------------------------------------------------

    def _turn_has_deliberated(self, state: Mapping[str, Any]) -> bool:
        return deliberated(_messages(state), self.fusion_tool.name)

    def _new_turn(self, state: Mapping[str, Any]) -> dict[str, Any] | None:
        """A turn that has not deliberated shows no earlier turn's result."""
        if state.get("fusion") is not None and not self._turn_has_deliberated(state):
            return {"fusion": None}
        return None

    def _forced(self, state: Mapping[str, Any]) -> ToolCall | None:
        """The fusion call to make before this model call, if `when` asks for one."""
        if self.when == "model_decides" or self._turn_has_deliberated(state):
            return None
        messages = _messages(state)
        if self.when == "always":
            # Once per user turn, before the model's first answer in it.
            if any(isinstance(m, AIMessage) for m in current_turn(messages)):
                return None
        elif callable(self.when) and not self.when(state):
            return None
        prompt = turn_prompt(messages)
        if not prompt:
            return None  # nothing to deliberate on (no user text): the model answers
        return ToolCall(
            name=self.fusion_tool.name,
            args={"prompt": prompt, "messages": list(messages)},
            id=f"call_fusion_{len(messages)}",
            type="tool_call",
        )

    def _forced_update(self, call: ToolCall, message: Any) -> dict[str, Any]:
        assert isinstance(message, ToolMessage)
        shown = forced_call(call["args"]["prompt"], call["id"] or "", call["name"])
        update: dict[str, Any] = {"messages": [shown, message]}
        if isinstance(message.artifact, FusionResult):
            update["fusion"] = message.artifact
        return update

    def _offer(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        """The request with the fusion tool, or without it once the turn has deliberated
        (or when `when` is not the model's to decide)."""
        offered = self.when == "model_decides" and (
            self.offer_again_in_turn or not self._turn_has_deliberated(request.state)
        )
        if offered:
            return request
        tools = [tool for tool in request.tools if not self._is_fusion_tool(tool)]
        return request.override(tools=tools)

    def _is_fusion(self, request: ToolCallRequest) -> bool:
        return request.tool_call["name"] == self.fusion_tool.name

    def _is_fusion_tool(self, tool: BaseTool | dict[str, Any]) -> bool:
        return isinstance(tool, BaseTool) and tool.name == self.fusion_tool.name


def _recorded(outcome: ToolMessage | Command[Any]) -> ToolMessage | Command[Any]:
    """A deliberation's tool message, with its result in the state's `fusion` key."""
    if not isinstance(outcome, ToolMessage):
        return outcome
    result = outcome.artifact
    if not isinstance(result, FusionResult) or result.failure_reason == CAPPED:
        return outcome  # a refusal, or the second call of a message: nothing ran
    return Command(update={"messages": [outcome], "fusion": result})


def _messages(state: Mapping[str, Any]) -> list[BaseMessage]:
    return cast("list[BaseMessage]", list(state.get("messages") or []))
