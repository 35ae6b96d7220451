"""`ChatFusion`: the `openrouter/fusion` model alias as a LangChain chat model.

As on the hosted alias, an outer model receives the fusion tool and decides whether to
deliberate; the tool loop runs inside the chat model and the caller gets the final
`AIMessage`. With `tool_choice="required"` and no other tools, deliberation is certain and
the first outer call (which could only choose the tool) is skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils import from_env, secret_from_env
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, SecretStr, model_validator

from langchain_fusion.backends import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    OPENROUTER_BASE_URL,
    ModelLike,
    OpenAICompatibleBackend,
    model_label,
    resolve_model,
)
from langchain_fusion.chat_models.callbacks import child_config, parent_run
from langchain_fusion.chat_models.loop_stop import check_conditions
from langchain_fusion.chat_models.tool_loop import OuterTurn, ToolChoice, normalise_choice
from langchain_fusion.contract.cascade import describe_cascade
from langchain_fusion.graph import FusionSetup
from langchain_fusion.graph.inner_call import configure_inner_call
from langchain_fusion.graph.progress import STREAM_PANEL_TOKENS_KEY
from langchain_fusion.graph.prompts import FUSION_TOOL_NAME
from langchain_fusion.graph.steps import PlanResult, arun_plan, run_plan
from langchain_fusion.tools.fusion import FusionTool
from langchain_fusion.tools.settings import FusionSettings

FUSION_ALIASES: dict[str, str | None] = {
    "openrouter/fusion": None,
    "openrouter/fusion-flash": "general-fast",
}
"""Model aliases and the preset each selects (None: the default or the given preset)."""

_PARENT_RUN = "_fusion_parent_run"
_STREAM_OUTER = "_fusion_stream_outer"
_UNSET: Any = object()


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
    """The outer model's temperature (`panel_temperature` is the panel's)."""
    max_tokens: int | None = None
    """The outer model's output limit (`max_completion_tokens` limits inner calls)."""
    stop: list[str] | None = None
    streaming: bool = False
    tool_choice: ToolChoice | None = None
    max_invocations: int | None = None
    """Deliberations per conversation (see `FusionTool.max_invocations`)."""

    @model_validator(mode="after")
    def _known_alias(self) -> ChatFusion:
        if self.model_name not in FUSION_ALIASES:
            known = ", ".join(FUSION_ALIASES)
            raise ValueError(f"model must be one of {known}, got {self.model_name!r}")
        return self

    @property
    def _fusion(self) -> FusionTool:
        return self.built(self._build_parts)[0]

    @property
    def _outer(self) -> BaseChatModel:
        return self.built(self._build_parts)[1]

    def _build_parts(self) -> tuple[FusionTool, BaseChatModel]:
        """The fusion tool and the outer model, from the current fields (on first use)."""
        backend = self.backend or OpenAICompatibleBackend(
            base_url=self.base_url or OPENROUTER_BASE_URL,
            api_key=self.api_key,
            timeout=self.timeout or DEFAULT_TIMEOUT,
            max_retries=self.max_retries,
        )
        # Every fusion field reaches the tool as given; only these differ for the alias.
        settings = {name: getattr(self, name) for name in FusionSettings.model_fields}
        fusion = FusionTool(
            **{
                **settings,
                # The contract's default judge is the outer model.
                "judge_model": self.judge_model or self.outer_model,
                "preset": self.preset or FUSION_ALIASES[self.model_name],
                "backend": backend,
                "max_invocations": self.max_invocations,
            }
        )
        outer = self.outer_model or self.judge_model or fusion.configuration.parameters.judge
        configured = configure_inner_call(
            resolve_model(outer, backend),
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            depth=None,  # the outer call is the user's own request
        )
        return fusion, configured

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
    def configuration(self) -> FusionSetup:
        """The resolved configuration (built on first use from the current fields; reading
        it builds it, so that the first call does not pay for that)."""
        return self._fusion.configuration

    @property
    def outer_model_name(self) -> str:
        """The configured outer model (the concrete one is in `response_metadata`)."""
        return model_label(self._outer)

    @property
    def _llm_type(self) -> str:
        return "fusion-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # Everything that changes what a call does: a cache keyed on these never mixes
        # two configurations.
        setup = self._fusion.configuration
        return {
            "model_name": self.model_name,
            "outer_model": self.outer_model_name,
            "analysis_models": [seat.label for seat in setup.panel],
            "judge_model": setup.judge_label,
            "preset": setup.parameters.preset,
            "fallback_judge_model": [judge.label for judge in setup.judges[1:]],
            "parameters": setup.parameters.model_dump(mode="json", exclude_none=True),
            "limits": setup.limits.model_dump(mode="json", exclude_none=True),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stop": self.stop,
            "tool_choice": self.tool_choice,
            "max_invocations": self.max_invocations,
            "anonymize_judge": self.anonymize_judge,
            "research_tools": [tool.name for tool in self.research_tools or ()],
            # The judge's schema bounds change what it may answer.
            **({"analysis_limits": asdict(self.analysis_limits)} if self.analysis_limits else {}),
            # A cascade changes what a deliberation answers: part of the cache key.
            **({"cascade": describe_cascade(setup.cascade)} if setup.cascade else {}),
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        # The provider the outer call goes to: openrouter on openrouter.ai, openai on any
        # other OpenAI-compatible endpoint (vLLM, llama.cpp), or your model's own.
        provider = self._outer._get_ls_params().get("ls_provider")
        if isinstance(provider, str) and provider:
            params["ls_provider"] = provider
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
        """Bind your tools; the fusion tool stays available next to them (its name is
        reserved)."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if any(tool["function"]["name"] == FUSION_TOOL_NAME for tool in formatted):
            raise ValueError(
                f"the tool name {FUSION_TOOL_NAME!r} is reserved for the deliberation; "
                "rename your tool"
            )
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
        config, parent = parent_run(config)
        yield from super().stream(input, config, stop=stop, **{_PARENT_RUN: parent, **kwargs})

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config, parent = parent_run(config)
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

    # --- the tool loop (chat_models/tool_loop.py), driven once for each path --------

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        child = child_config(run_manager, kwargs.pop(_PARENT_RUN, None))
        turn = self._start_turn(messages, stop, kwargs)
        child = _panel_tokens(child, turn)
        for chunk in run_plan(turn.plan(self._outer, self._fusion, child), child):
            if piece := _text_piece(chunk):
                if run_manager:
                    run_manager.on_llm_new_token(piece.text, chunk=piece)
                yield piece
        yield turn.final_chunk(self._outer)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        child = child_config(run_manager, kwargs.pop(_PARENT_RUN, None))
        turn = self._start_turn(messages, stop, kwargs)
        child = _panel_tokens(child, turn)
        plan = turn.plan(self._outer, self._fusion, child)
        async for chunk in arun_plan(plan, child, PlanResult()):
            if piece := _text_piece(chunk):
                if run_manager:
                    await run_manager.on_llm_new_token(piece.text, chunk=piece)
                yield piece
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
    ) -> OuterTurn:
        stream_outer = kwargs.pop(_STREAM_OUTER, True)
        # `fusion_enabled=False` (the hosted plugin's `enabled: false`): no deliberation in
        # this request; the outer model answers with your tools only.
        enabled = kwargs.pop("fusion_enabled", True)
        # The hosted `stop_server_tools_when`: conditions that end the server-tool loop.
        stop_when = kwargs.pop("stop_server_tools_when", None)
        stop_when = check_conditions(stop_when) if stop_when is not None else []
        user_tools: list[dict[str, Any]] = list(kwargs.pop("tools", None) or [])
        # A call's own choice wins, "none" and False included: only an absent one defers to
        # the instance's.
        given = kwargs.pop("tool_choice", _UNSET)
        choice = normalise_choice(self.tool_choice if given is _UNSET else given)
        kwargs.pop("ls_structured_output_format", None)
        if stop or self.stop:
            kwargs["stop"] = stop or self.stop
        return OuterTurn.start(
            messages,
            user_tools=user_tools,
            choice=choice,
            call_kwargs=kwargs,
            router=self.model_name,
            stream_outer=stream_outer,
            fusion_enabled=bool(enabled),
            stop_when=stop_when,
        )


def _panel_tokens(config: RunnableConfig, turn: OuterTurn) -> RunnableConfig:
    """A streamed call asks its deliberation for the panel's tokens too (unless
    `stream_panel_tokens` says otherwise)."""
    if not turn.stream_outer:
        return config
    configurable = {**(config.get("configurable") or {}), STREAM_PANEL_TOKENS_KEY: True}
    return {**config, "configurable": configurable}


def _text_piece(chunk: BaseMessageChunk) -> ChatGenerationChunk | None:
    """The part of an outer chunk the caller sees as it streams: its text."""
    text = chunk.text
    return ChatGenerationChunk(message=AIMessageChunk(content=text)) if text else None
