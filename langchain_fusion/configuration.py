"""The resolved set-up of a deliberation: parameters plus the concrete models for each seat."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_openai.chat_models.base import BaseChatOpenAI
from pydantic import ValidationError

from langchain_fusion.backends import (
    ModelLike,
    OpenAICompatibleBackend,
    configure_inner_call,
    model_label,
    resolve_model,
    runs_server_tools,
)
from langchain_fusion.limits import FusionLimits
from langchain_fusion.parameters import (
    MAX_PANEL,
    MIN_PANEL,
    FusionParameterError,
    FusionParameters,
    ToolSpec,
)
from langchain_fusion.research import ToolRunner
from langchain_fusion.result import AnalysisLimits

logger = logging.getLogger(__name__)

# The hosted tool types that have a local counterpart in `langchain_fusion.web`.
WEB_SEARCH = "openrouter:web_search"
WEB_FETCH = "openrouter:web_fetch"


@dataclass(frozen=True)
class PanelSeat:
    """One seat of the panel: the model that answers there, set up for a panel call."""

    index: int
    label: str
    model: Runnable[LanguageModelInput, BaseMessage]
    """Answers in text (with OpenRouter's server-side tools, when those are used)."""
    research_model: Runnable[LanguageModelInput, BaseMessage] | None = None
    """The model with the local research tools bound; None when there are none."""


@dataclass(frozen=True)
class FusionConfiguration:
    """Parameters and models, resolved once when the graph is built, never per call."""

    parameters: FusionParameters
    panel: tuple[PanelSeat, ...]
    judge_label: str
    judge: Runnable[LanguageModelInput, Any]
    """The judge bound to the analysis schema; returns `{"raw", "parsed", "parsing_error"}`."""
    synthesizer_label: str | None
    synthesizer: Runnable[LanguageModelInput, BaseMessage] | None
    """The outer model writing the final answer; None when the caller writes it (tool form)."""
    judge_research: Runnable[LanguageModelInput, BaseMessage] | None = None
    """The judge with research tools and the analysis schema in one request, or None."""
    limits: FusionLimits = field(default_factory=FusionLimits)
    fallback_judge_label: str | None = None
    fallback_judge: Runnable[LanguageModelInput, Any] | None = None
    """Asked when the judge fails (after its one retry)."""
    tools: ToolRunner = field(default_factory=lambda: ToolRunner(()))
    """The local research tools (web search and fetch, or the caller's own); maybe none."""

    @classmethod
    def build(
        cls,
        parameters: FusionParameters | Mapping[str, Any] | None = None,
        *,
        panel: Sequence[ModelLike] | None = None,
        judge: ModelLike | None = None,
        outer_model: ModelLike | None = None,
        synthesize: bool = True,
        backend: OpenAICompatibleBackend | None = None,
        analysis_limits: AnalysisLimits | None = None,
        research_tools: Sequence[BaseTool] | None = None,
        limits: FusionLimits | Mapping[str, Any] | None = None,
        fallback_judge: ModelLike | None = None,
    ) -> FusionConfiguration:
        """Resolve slugs and instances into configured models.

        The judge is `judge`, else `parameters.model`, else the outer model, else the
        preset's judge. The synthesis is written by `outer_model`, else the judge.
        `research_tools` replaces the web tools the `tools` parameter names.
        """
        params = _parameters(parameters)
        backend = backend or OpenAICompatibleBackend()
        entries: Sequence[ModelLike] = panel if panel is not None else params.panel
        if not MIN_PANEL <= len(entries) <= MAX_PANEL:
            raise FusionParameterError(
                [f"panel = {len(entries)} models; allowed: {MIN_PANEL} to {MAX_PANEL} models"]
            )
        run_limits = limits_from(limits)
        if run_limits.min_successful > len(entries):
            raise FusionParameterError(
                [
                    f"min_successful = {run_limits.min_successful}: more than the panel's "
                    f"{len(entries)} models; allowed: 1 to {len(entries)}"
                ]
            )
        specs = params.effective_tools
        # On OpenRouter the hosted web tools run server-side; elsewhere we run stand-ins.
        server_side = research_tools is None and backend.runs_server_tools
        local_tools = [] if server_side else _local_tools(specs, research_tools)

        seats = []
        for index, entry in enumerate(entries):
            model = resolve_model(entry, backend, panel_index=index)
            label = model_label(model)
            configured = configure_inner_call(
                model,
                temperature=params.temperature,
                max_tokens=params.max_completion_tokens,
                reasoning=params.reasoning,
            )
            answering, researching = _with_tools(configured, specs, local_tools, backend)
            seats.append(
                PanelSeat(
                    index,
                    label,
                    answering.with_config(run_name=f"panel:{label}"),
                    researching.with_config(run_name=f"panel:{label}") if researching else None,
                )
            )

        judge_like = judge or params.model or outer_model or params.judge
        judge_model = resolve_model(judge_like, backend)
        configured_judge = configure_inner_call(
            judge_model,
            temperature=0.0,  # a repeatable analysis
            max_tokens=params.max_completion_tokens,
            reasoning=params.reasoning,
        )
        schema = (analysis_limits or AnalysisLimits()).json_schema()

        synthesizer_label = synthesizer = None
        if synthesize:
            outer = resolve_model(outer_model, backend) if outer_model else judge_model
            synthesizer_label = model_label(outer)
            synthesizer = configure_inner_call(
                outer, max_tokens=params.max_completion_tokens, depth=None
            ).with_config(run_name="synthesis")

        judge_research = _judge_with_tools(configured_judge, schema, specs, local_tools, backend)
        fallback_label = fallback = None
        if fallback_judge is not None:
            fallback_model = resolve_model(fallback_judge, backend)
            fallback_label = model_label(fallback_model)
            configured_fallback = configure_inner_call(
                fallback_model,
                temperature=0.0,
                max_tokens=params.max_completion_tokens,
                reasoning=params.reasoning,
            )
            fallback = _structured_judge(
                configured_fallback.model_copy(update={"name": "judge:fallback"}), schema
            ).with_config(run_name="judge:fallback")
        return cls(
            parameters=params,
            panel=tuple(seats),
            judge_label=model_label(judge_model),
            # The model run inside structured output is named too, so a trace reads `judge`.
            judge=_structured_judge(
                configured_judge.model_copy(update={"name": "judge"}), schema
            ).with_config(run_name="judge"),
            synthesizer_label=synthesizer_label,
            synthesizer=synthesizer,
            judge_research=judge_research.with_config(run_name="judge") if judge_research else None,
            tools=ToolRunner(local_tools),
            limits=run_limits,
            fallback_judge_label=fallback_label,
            fallback_judge=fallback,
        )


def _parameters(parameters: FusionParameters | Mapping[str, Any] | None) -> FusionParameters:
    if parameters is None:
        return FusionParameters()
    if isinstance(parameters, FusionParameters):
        return parameters
    return FusionParameters.from_json(parameters)


def limits_from(limits: FusionLimits | Mapping[str, Any] | None) -> FusionLimits:
    """`FusionLimits` from itself or its fields; bad values raise `FusionParameterError`."""
    if limits is None:
        return FusionLimits()
    if isinstance(limits, FusionLimits):
        return limits
    try:
        return FusionLimits.model_validate(dict(limits))
    except ValidationError as error:
        raise FusionParameterError(
            [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
        ) from None


def _local_tools(
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


def _with_tools(
    model: BaseChatModel,
    specs: Sequence[ToolSpec],
    local_tools: Sequence[BaseTool],
    backend: OpenAICompatibleBackend,
) -> tuple[
    Runnable[LanguageModelInput, BaseMessage], Runnable[LanguageModelInput, BaseMessage] | None
]:
    """(the answering model, the researching model) for one panel seat."""
    if specs and not local_tools and runs_server_tools(model, backend):
        # OpenRouter runs its web tools itself, within the one call.
        return _chat_completions(model).bind(tools=_server_tools(specs)), None
    if not local_tools:
        return model, None
    try:
        return model, model.bind_tools(local_tools)
    except NotImplementedError:  # a model class without tool calling answers without tools
        return model, None


def _judge_with_tools(
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
    elif runs_server_tools(judge, backend):
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


def _structured_judge(
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
