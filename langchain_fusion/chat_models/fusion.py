"""`ChatFusion`: the `openrouter/fusion` model alias as a LangChain chat model.

As on the hosted alias, an outer model receives the fusion tool and decides whether to
deliberate; the tool loop runs inside the chat model and the caller gets the final
`AIMessage`. With `tool_choice="required"` and no other tools, deliberation is certain and
the first outer call (which could only choose the tool) is skipped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    HumanMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.tools import BaseTool
from langchain_core.utils import from_env, secret_from_env
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.constants import TAG_NOSTREAM
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from langchain_fusion.backends import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    OPENROUTER_BASE_URL,
    ModelLike,
    OpenAICompatibleBackend,
    configure_inner_call,
    model_label,
    resolve_model,
)
from langchain_fusion.contract.result import FusionResult, TokenUsage
from langchain_fusion.graph.prompts import FUSION_TOOL_NAME, is_instruction_message
from langchain_fusion.tools.fusion import FusionTool
from langchain_fusion.tools.settings import FusionSettings

FUSION_ALIASES: dict[str, str | None] = {
    "openrouter/fusion": None,
    "openrouter/fusion-flash": "general-fast",
}
"""Model aliases and the preset each selects (None: the default or the given preset)."""

_PARENT_RUN = "_fusion_parent_run"
_STREAM_OUTER = "_fusion_stream_outer"

MAX_OUTER_CALLS = 4
"""Outer calls per request: decide, (deliberate), answer; a margin for parallel calls."""

ToolChoice = str | dict[str, Any] | bool


class ChatFusion(FusionSettings, BaseChatModel):
    """Multi-model deliberation behind a chat model: `model="openrouter/fusion"`.

    The outer model (`outer_model`, default the judge) gets the fusion tool next to any
    tools you bind. When it calls fusion, a panel answers in parallel, a judge compares the
    answers, and the outer model writes the final answer from that analysis. When it picks
    one of your tools, that tool call comes back to you as from any chat model.

    Setup:
        `pip install langchain-fusion` and set `OPENROUTER_API_KEY` (and, for any other
        OpenAI-compatible server, `OPENROUTER_BASE_URL`).

    Key init args:
        model: `openrouter/fusion`, or `openrouter/fusion-flash` for the `general-fast` preset.
        analysis_models, judge_model, preset, max_tool_calls, max_completion_tokens,
        reasoning, tools: the fusion parameters (slugs or chat model instances for models).
        outer_model: The model that decides and writes the answer; default the judge.
        temperature, max_tokens, stop: For the outer model. `panel_temperature` for the panel.
        tool_choice: `"required"` forces deliberation (also via `bind_tools` or call kwargs).

    Example:
        ```python
        from langchain_fusion import ChatFusion

        llm = ChatFusion(model="openrouter/fusion", tool_choice="required")
        message = llm.invoke("Where do experts disagree on dark matter?")
        message.response_metadata["fusion_result"]["analysis"]["contradictions"]
        ```
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    model_name: str = Field(default="openrouter/fusion", alias="model")
    outer_model: ModelLike | None = None
    base_url: str | None = Field(default_factory=from_env("OPENROUTER_BASE_URL", default=None))
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env("OPENROUTER_API_KEY", default=None)
    )
    timeout: float | None = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    temperature: float | None = None
    """The outer model's temperature."""
    panel_temperature: float | None = None
    """The panel's temperature (the contract's `temperature`); the judge runs at 0."""
    max_tokens: int | None = None
    """The outer model's output limit (`max_completion_tokens` limits inner calls)."""
    stop: list[str] | None = None
    streaming: bool = False
    tool_choice: ToolChoice | None = None
    max_invocations: int | None = None
    """Deliberations per conversation (see `FusionTool.max_invocations`)."""

    _fusion: FusionTool = PrivateAttr()
    _outer: BaseChatModel = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> ChatFusion:
        if self.model_name not in FUSION_ALIASES:
            known = ", ".join(FUSION_ALIASES)
            raise ValueError(f"model must be one of {known}, got {self.model_name!r}")
        backend = self.backend or OpenAICompatibleBackend(
            base_url=self.base_url or OPENROUTER_BASE_URL,
            api_key=self.api_key,
            timeout=self.timeout or DEFAULT_TIMEOUT,
            max_retries=self.max_retries,
        )
        self._fusion = FusionTool(
            parameters=self.parameters,
            analysis_models=self.analysis_models,
            # The contract's default judge is the outer model.
            judge_model=self.judge_model or self.outer_model,
            preset=self.preset or FUSION_ALIASES[self.model_name],
            max_tool_calls=self.max_tool_calls,
            max_completion_tokens=self.max_completion_tokens,
            reasoning=self.reasoning,
            tools=self.tools,
            backend=backend,
            analysis_limits=self.analysis_limits,
            research_tools=self.research_tools,
            limits=self.fusion_limits(),
            fallback_judge_model=self.fallback_judge_model,
            temperature=self.panel_temperature,
            max_invocations=self.max_invocations,
        )
        outer = self.outer_model or self.judge_model or self._fusion.configuration.parameters.judge
        self._outer = configure_inner_call(
            resolve_model(outer, backend),
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            depth=None,  # the outer call is the user's own request
        )
        return self

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "OPENROUTER_API_KEY"}

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """The module that defines the class, which `load` imports it from."""
        return ["langchain_fusion", "chat_models"]

    @property
    def outer_model_name(self) -> str:
        """The configured outer model (the concrete one is in `response_metadata`)."""
        return model_label(self._outer)

    @property
    def _llm_type(self) -> str:
        return "fusion-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        setup = self._fusion.configuration
        return {
            "model_name": self.model_name,
            "outer_model": self.outer_model_name,
            "analysis_models": [seat.label for seat in setup.panel],
            "judge_model": setup.judge_label,
            "preset": setup.parameters.preset,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "openrouter"
        # A per-call `model` (e.g. `invoke(..., model=...)`) reaches the outer call.
        override = kwargs.get("model")
        params["ls_model_name"] = override if isinstance(override, str) else self.model_name
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: ToolChoice | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind your tools; the fusion tool stays available next to them."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return super().bind(tools=formatted, **kwargs)

    # --- nesting the inner runs -----------------------------------------------------
    #
    # `BaseChatModel.stream` / `astream` call `_stream` without the run manager, so the
    # inner calls would not nest under this run. `stream` and `astream` therefore pick the
    # run id in advance and pass the parent run along; `invoke` goes through `_generate`,
    # which has the run manager.

    def _should_stream(self, *, async_api: bool, run_manager: Any = None, **kwargs: Any) -> bool:
        if run_manager is not None:
            # Implicit streaming from `invoke` (callbacks asked for tokens): `_generate`
            # streams too, reporting tokens to the run manager it, unlike `_stream`, gets.
            return False
        return super()._should_stream(async_api=async_api, **kwargs)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        config, parent = _parent_run(config)
        yield from super().stream(input, config, stop=stop, **{_PARENT_RUN: parent, **kwargs})

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config, parent = _parent_run(config)
        async for chunk in super().astream(
            input, config, stop=stop, **{_PARENT_RUN: parent, **kwargs}
        ):
            yield chunk

    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        kwargs.pop(_PARENT_RUN, None)  # plumbing, not parameters to trace
        kwargs.pop(_STREAM_OUTER, None)
        return super()._get_invocation_params(stop=stop, **kwargs)

    # --- the tool loop --------------------------------------------------------------

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        stream_outer = kwargs.pop(_STREAM_OUTER, True)
        child = _child_config(run_manager, kwargs.pop(_PARENT_RUN, None))
        turn = self._start_turn(messages, stop, kwargs)
        if turn.force_fusion:
            turn.add_deliberation(self._fusion.invoke(turn.forced_call(), child))
        for _ in range(MAX_OUTER_CALLS):
            outer = turn.outer_runnable(self._outer, self._fusion)
            message: BaseMessage | None = None
            if not stream_outer:
                message = outer.invoke(turn.transcript, child, **turn.call_kwargs)
                if piece := turn.text_piece(message):
                    yield piece
            else:
                merged: BaseMessageChunk | None = None
                for chunk in outer.stream(turn.transcript, child, **turn.call_kwargs):
                    merged = _merge(merged, chunk)
                    if piece := turn.text_piece(chunk):
                        if run_manager:
                            run_manager.on_llm_new_token(piece.text, chunk=piece)
                        yield piece
                message = merged
            calls = turn.take_outer(message)
            if not calls:
                break
            for call in calls:
                turn.add_deliberation(self._fusion.invoke(call, child))
        yield turn.final_chunk(self._outer)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        stream_outer = kwargs.pop(_STREAM_OUTER, True)
        child = _child_config(run_manager, kwargs.pop(_PARENT_RUN, None))
        turn = self._start_turn(messages, stop, kwargs)
        if turn.force_fusion:
            turn.add_deliberation(await self._fusion.ainvoke(turn.forced_call(), child))
        for _ in range(MAX_OUTER_CALLS):
            outer = turn.outer_runnable(self._outer, self._fusion)
            message: BaseMessage | None = None
            if not stream_outer:
                message = await outer.ainvoke(turn.transcript, child, **turn.call_kwargs)
                if piece := turn.text_piece(message):
                    yield piece
            else:
                amerged: BaseMessageChunk | None = None
                async for chunk in outer.astream(turn.transcript, child, **turn.call_kwargs):
                    amerged = _merge(amerged, chunk)
                    if piece := turn.text_piece(chunk):
                        if run_manager:
                            await run_manager.on_llm_new_token(piece.text, chunk=piece)
                        yield piece
                message = amerged
            calls = turn.take_outer(message)
            if not calls:
                break
            for call in calls:
                turn.add_deliberation(await self._fusion.ainvoke(call, child))
        yield turn.final_chunk(self._outer)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # Token by token only for a listener (the call asked to stream, or a streaming
        # callback is attached): per-chunk parsing is most of a deliberation's CPU otherwise.
        kwargs[_STREAM_OUTER] = self._streams_to(run_manager, **kwargs)
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        kwargs[_STREAM_OUTER] = self._streams_to(run_manager, **kwargs)
        return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))

    def _streams_to(self, run_manager: Any, **kwargs: Any) -> bool:
        """Whether `invoke` has someone to stream tokens to (the base class's own rule)."""
        return BaseChatModel._should_stream(
            self, async_api=False, run_manager=run_manager, **kwargs
        )

    def _start_turn(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> _Turn:
        user_tools: list[dict[str, Any]] = list(kwargs.pop("tools", None) or [])
        choice = _normalise_choice(kwargs.pop("tool_choice", None) or self.tool_choice)
        kwargs.pop("ls_structured_output_format", None)
        if stop or self.stop:
            kwargs["stop"] = stop or self.stop
        return _Turn(
            conversation=list(messages),
            transcript=list(messages),
            user_tools=user_tools,
            choice=choice,
            call_kwargs=kwargs,
            router=self.model_name,
        )


@dataclass
class _Turn:
    """One request's tool loop: the transcript so far and what has been spent."""

    conversation: list[BaseMessage]
    transcript: list[BaseMessage]
    user_tools: list[dict[str, Any]]
    choice: ToolChoice | None
    call_kwargs: dict[str, Any]
    router: str
    results: list[FusionResult] = field(default_factory=list)
    usage: UsageMetadata | None = None
    last: BaseMessage | None = None

    @property
    def force_fusion(self) -> bool:
        """Deliberation is certain: fusion named, or a tool required and fusion the only one."""
        if _named(self.choice) == FUSION_TOOL_NAME:
            return True
        return self.choice == "required" and not self.user_tools

    def forced_call(self) -> ToolCall:
        """The fusion call the outer model could only have made: on the user's last turn."""
        prompt = next(
            (
                m.text
                for m in reversed(self.conversation)
                if isinstance(m, HumanMessage) and m.text.strip()
            ),
            next((m.text for m in reversed(self.conversation) if m.text.strip()), ""),
        )
        return ToolCall(
            name=FUSION_TOOL_NAME,
            args={"prompt": prompt, "messages": self.conversation},
            id=f"call_fusion_{len(self.results)}",
            type="tool_call",
        )

    def outer_runnable(
        self, outer: BaseChatModel, fusion: FusionTool
    ) -> Runnable[LanguageModelInput, BaseMessage]:
        """The outer model with this step's tools: fusion until it has run, then yours."""
        tools: list[Any] = list(self.user_tools)
        choice = self.choice
        if not self.results:
            tools = [fusion, *tools]
        elif _named(choice) == FUSION_TOOL_NAME or (choice == "required" and not self.user_tools):
            choice = None  # fusion ran: the requirement is met
        if not tools:
            return outer.with_config(run_name="outer")
        if choice is None:
            return outer.bind_tools(tools).with_config(run_name="outer")
        # Chat model classes accept a dict or "required" here, whatever the base signature.
        bound = outer.bind_tools(tools, tool_choice=choice)  # type: ignore[arg-type]
        return bound.with_config(run_name="outer")

    def text_piece(self, chunk: BaseMessage) -> ChatGenerationChunk | None:
        """The part of an outer chunk the caller sees as it streams: its text."""
        text = chunk.text
        return ChatGenerationChunk(message=AIMessageChunk(content=text)) if text else None

    def take_outer(self, message: BaseMessage | None) -> list[ToolCall]:
        """Record an outer call; return the fusion calls it made, with the conversation."""
        if message is None:
            return []
        self.usage = add_usage(self.usage, getattr(message, "usage_metadata", None))
        self.last = message
        tool_calls = getattr(message, "tool_calls", [])
        calls = [c for c in tool_calls if c["name"] == FUSION_TOOL_NAME]
        if not calls or self.results:
            return []
        self.transcript.append(AIMessage(content=message.content, tool_calls=tool_calls))
        # The whole conversation: the tool leaves out the tool plumbing itself, and counts
        # its own earlier results for `max_invocations`.
        history = list(self.conversation)
        return [
            ToolCall(
                name=FUSION_TOOL_NAME,
                args={**call["args"], "messages": history},
                id=call["id"],
                type="tool_call",
            )
            for call in calls
        ]

    def add_deliberation(self, tool_message: Any) -> None:
        """Append the fusion tool's message; count the deliberation's usage."""
        assert isinstance(tool_message, ToolMessage)
        if not self.transcript or not isinstance(self.transcript[-1], AIMessage | ToolMessage):
            # Forced: show the outer model the call it did not need to make.
            self.transcript.append(
                AIMessage(
                    content="",
                    tool_calls=[
                        ToolCall(
                            name=FUSION_TOOL_NAME,
                            args={"prompt": _prompt_of(self.conversation)},
                            id=tool_message.tool_call_id,
                            type="tool_call",
                        )
                    ],
                )
            )
        self.transcript.append(
            ToolMessage(tool_message.content, tool_call_id=tool_message.tool_call_id)
        )
        result = tool_message.artifact
        if isinstance(result, FusionResult):
            self.results.append(result)
            self.usage = add_usage(self.usage, _as_usage_metadata(result.usage.total))
        elif not self.results:
            # A refused deliberation (e.g. nested): the outer model answers without it.
            self.results.append(FusionResult(status="error"))

    def final_chunk(self, outer: BaseChatModel) -> ChatGenerationChunk:
        """The closing chunk: your tool calls, the summed usage, and the metadata."""
        last = self.last
        tool_call_chunks = []
        finish_reason = "stop"
        if last is not None:
            finish_reason = last.response_metadata.get("finish_reason", "stop")
            for index, call in enumerate(getattr(last, "tool_calls", [])):
                if call["name"] == FUSION_TOOL_NAME:
                    continue
                tool_call_chunks.append(
                    {
                        "name": call["name"],
                        "args": json.dumps(call["args"]),
                        "id": call["id"],
                        "index": index,
                        "type": "tool_call_chunk",
                    }
                )
        metadata: dict[str, Any] = {
            "model_name": (last.response_metadata.get("model_name") if last else None)
            or model_label(outer),
            "model_provider": "openrouter",
            "router": self.router,
            "finish_reason": finish_reason,
        }
        completed = [r for r in self.results if r.responses or r.failure_reason]
        if completed:
            metadata["fusion_result"] = completed[-1].model_dump(mode="json")
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                tool_call_chunks=tool_call_chunks,
                usage_metadata=self.usage,
                response_metadata=metadata,
                chunk_position="last",
            ),
            generation_info={"finish_reason": finish_reason},
        )


def _merge(total: BaseMessageChunk | None, chunk: BaseMessage) -> BaseMessageChunk:
    if not isinstance(chunk, BaseMessageChunk):
        raise TypeError(f"expected a streamed message chunk, got {type(chunk).__name__}")
    return chunk if total is None else total + chunk


@dataclass(frozen=True)
class _ParentRun:
    """This chat model's run, known before `BaseChatModel.stream` starts it."""

    run_id: UUID
    config: RunnableConfig


def _parent_run(config: RunnableConfig | None) -> tuple[RunnableConfig, _ParentRun]:
    config = ensure_config(config)
    run_id = config.get("run_id") or uuid4()
    config = {**config, "run_id": run_id}
    return config, _ParentRun(run_id=run_id, config=config)


def _child_config(
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
    parent: _ParentRun | None = None,
) -> RunnableConfig:
    """Callbacks for the inner runs, nested under this chat model's run.

    LLM runs are leaves in LangChain (their managers have no `get_child`); the inner calls
    of a deliberation belong under it all the same, in traces and in `astream_events`.
    They are tagged `nostream`: LangGraph's `messages` stream then shows this model's
    answer once, not the inner models' tokens as well.
    """
    manager: CallbackManager | AsyncCallbackManager
    if run_manager is not None:
        manager_class = (
            AsyncCallbackManager
            if isinstance(run_manager, AsyncCallbackManagerForLLMRun)
            else CallbackManager
        )
        manager = manager_class(handlers=[], parent_run_id=run_manager.run_id)
        manager.set_handlers(run_manager.inheritable_handlers)
        manager.add_tags(run_manager.inheritable_tags)
        manager.add_metadata(_without_ls(run_manager.inheritable_metadata))
    elif parent is not None:
        manager = CallbackManager.configure(
            parent.config.get("callbacks"),
            inheritable_tags=parent.config.get("tags"),
            inheritable_metadata=_without_ls(parent.config.get("metadata") or {}),
        )
        manager.parent_run_id = parent.run_id
    else:
        return {"tags": [TAG_NOSTREAM]}
    manager.add_tags([TAG_NOSTREAM])
    return {"callbacks": manager}


def _without_ls(metadata: dict[str, Any]) -> dict[str, Any]:
    """This model's `ls_*` trace parameters describe it, not the runs inside it."""
    return {k: v for k, v in metadata.items() if not k.startswith("ls_")}


def _normalise_choice(choice: ToolChoice | None) -> ToolChoice | None:
    """One spelling per meaning: "required" for any/True, a dict for a named tool."""
    if choice is True or choice in ("any", "required"):
        return "required"
    if choice in (False, None, "auto"):
        return None
    if isinstance(choice, str) and choice != "none":
        return {"type": "function", "function": {"name": choice}}
    return choice


def _named(choice: ToolChoice | None) -> str | None:
    if isinstance(choice, dict):
        function = choice.get("function") or {}
        name = function.get("name") if isinstance(function, dict) else None
        return name if isinstance(name, str) else choice.get("name")
    return None


def _prompt_of(conversation: Sequence[BaseMessage]) -> str:
    for message in reversed(conversation):
        if not is_instruction_message(message) and message.text.strip():
            return message.text
    return ""


def _as_usage_metadata(usage: TokenUsage) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
    )
