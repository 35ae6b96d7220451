"""The resolved set-up of a deliberation: parameters, limits and the models of each seat.

Resolved once, when a graph (or a `FusionTool`, a `ChatFusion`) is built, never per call;
each run then gets its own clock and ledger in a `FusionContext` (`graph/context.py`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolNode

from langchain_fusion.backends import (
    ModelLike,
    OpenAICompatibleBackend,
    model_label,
    resolve_model,
    runs_hosted_tools,
)
from langchain_fusion.contract.cascade import Cascade, cascade_from, check_cascade
from langchain_fusion.contract.parameters import (
    MAX_PANEL,
    MIN_PANEL,
    CacheControl,
    FusionParameterError,
    FusionParameters,
    ToolSpec,
)
from langchain_fusion.contract.result import AnalysisLimits
from langchain_fusion.graph.binding import (
    bind_judge_tools,
    bind_panel_tools,
    local_research_tools,
    research_tool_node,
    structured_judge,
)
from langchain_fusion.graph.inner_call import configure_inner_call
from langchain_fusion.limits import FusionLimits, limits_from


@dataclass(frozen=True)
class PanelSeat:
    """One seat of the panel: the model that answers there, set up for a panel call."""

    index: int
    label: str
    """The model's name, or `name#k` when the panel has that model more than once."""
    repeated: bool
    model: Runnable[LanguageModelInput, BaseMessage]
    """Answers in text (with OpenRouter's server-side tools, when those are used)."""
    research_model: Runnable[LanguageModelInput, BaseMessage] | None = None
    """The model with the local research tools bound; None when there are none."""

    def name(self, reported: str | None) -> str:
        """The seat's name in the result: the concrete model that answered, as the hosted
        service reports it, or the stable seat label when the model sits more than once."""
        return self.label if self.repeated else (reported or self.label)


@dataclass(frozen=True)
class JudgeSeat:
    """A judge: bound to the analysis schema, and with research tools when it may research."""

    label: str
    structured: Runnable[LanguageModelInput, Any]
    """Returns `{"raw", "parsed", "parsing_error"}`."""
    research: Runnable[LanguageModelInput, BaseMessage] | None = None
    """Tools and the analysis schema in one request, or None."""


@dataclass(frozen=True)
class FusionSetup:
    """Parameters, limits and models, resolved once."""

    parameters: FusionParameters
    limits: FusionLimits
    panel: tuple[PanelSeat, ...]
    judges: tuple[JudgeSeat, ...]
    """The judge, then the fallback judge (if any), asked in turn."""
    synthesizer_label: str | None
    synthesizer: Runnable[LanguageModelInput, BaseMessage] | None
    """The outer model writing the final answer; None when the caller writes it (tool form)."""
    tools: ToolNode | None = None
    """Runs the local research tools (web search and fetch, or the caller's own)."""
    anonymize_judge: bool = False
    """The judge sees `Response A`, `Response B`, ... in a shuffled order, not model names."""
    judge_shuffle_seed: int = 0
    stream_panel_tokens: bool | None = None
    """Panelists stream their tokens as `panel.delta` events: True always, False never,
    None when the caller streams `custom` (graph/progress.py)."""
    cascade: Cascade | None = None
    """Ask the first seats, and the rest only when they disagree (graph/cascade.py)."""

    @property
    def judge_label(self) -> str:
        return self.judges[0].label

    @property
    def first_seats(self) -> tuple[PanelSeat, ...]:
        """The seats a run starts with: the cascade's first seats, else the whole panel."""
        return self.panel[: self.cascade.first] if self.cascade else self.panel

    @property
    def judge_stages(self) -> int:
        """How many times a run may ask the judge: twice in a cascade that asks it about
        the first seats and again about every answer."""
        return 2 if self.cascade is not None and self.cascade.asks_judge_first else 1

    def estimate_inputs(self) -> dict[str, Any]:
        """What the budget estimate needs to know about the seats."""
        researching = any(seat.research_model is not None for seat in self.panel)
        return {
            "panel": [seat.label for seat in self.panel],
            "judge": self.judge_label,
            "synthesizer": self.synthesizer_label,
            "tool_steps": self.parameters.max_tool_calls if researching else 0,
            "judge_tool_steps": (
                self.parameters.max_tool_calls if self.judges[0].research is not None else 0
            ),
            "judge_attempts": 2 * len(self.judges) * self.judge_stages,
            "judges": [judge.label for judge in self.judges],  # the fallback at its own price
        }


class SetupOptions(TypedDict, total=False):
    """How a graph is set up beyond the contract's parameters (see `build_setup`)."""

    panel: Sequence[ModelLike] | None
    """Slugs or chat model instances that override `analysis_models`."""
    judge: ModelLike | None
    """The judge; default `parameters.model`, else the outer model, else the preset's."""
    outer_model: ModelLike | None
    """The model that writes the final answer; default the judge."""
    synthesize: bool
    """False for the tool form: the graph ends after the judge (default True)."""
    backend: OpenAICompatibleBackend | None
    """Where slugs run; default OpenRouter (`OPENROUTER_BASE_URL`, `OPENROUTER_API_KEY`)."""
    analysis_limits: AnalysisLimits | None
    """Tighter bounds on the judge's schema, for small local judges."""
    research_tools: Sequence[BaseTool] | None
    """Your tools for panelists and the judge, in place of the web tools `tools` names."""
    limits: FusionLimits | Mapping[str, Any] | None
    """`FusionLimits` or its fields: quorum, straggler grace, deadline, budget, prices."""
    fallback_judge: ModelLike | None
    """Asked when the judge fails, after the judge's own retry."""
    anonymize_judge: bool
    """The judge reads `Response A`, `Response B`, ... in a seeded shuffled order."""
    judge_shuffle_seed: int
    stream_panel_tokens: bool | None
    """`panel.delta` events: True always, False never, None (the default) when the run is
    streamed with `stream_mode="custom"`. Every other progress event is always emitted."""
    cascade: Cascade | Mapping[str, Any] | None
    """`{"first": k}` or a `Cascade`: the whole panel only when the first k disagree."""


def build_setup(
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
    anonymize_judge: bool = False,
    judge_shuffle_seed: int = 0,
    stream_panel_tokens: bool | None = None,
    cascade: Cascade | Mapping[str, Any] | None = None,
) -> FusionSetup:
    """Resolve slugs and instances into configured models (validated before any call).

    The judge is `judge`, else `parameters.model`, else the outer model, else the preset's
    judge. The synthesis is written by `outer_model`, else the judge. `research_tools`
    replaces the web tools the `tools` parameter names.
    """
    params = _parameters(parameters)
    backend = backend or OpenAICompatibleBackend()
    entries: Sequence[ModelLike] = panel if panel is not None else params.panel
    run_limits = limits_from(limits)
    run_cascade = check_panel(len(entries), run_limits, cascade)
    specs = params.effective_tools
    # On OpenRouter the hosted web tools run server-side; elsewhere we run stand-ins.
    server_side = research_tools is None and backend.hosts_tools
    local_tools = [] if server_side else local_research_tools(specs, research_tools)

    models = [resolve_model(entry, backend, panel_index=i) for i, entry in enumerate(entries)]
    labels = seat_labels([model_label(model) for model in models])
    seats = []
    for index, (entry, model, label) in enumerate(zip(entries, models, labels, strict=True)):
        configured = configure_inner_call(
            model,
            temperature=params.temperature,
            max_tokens=_completion_limit(params, entry),
            reasoning=params.reasoning,
            cache_control=_cache_control(params, model, backend),
        )
        answering, researching = bind_panel_tools(configured, specs, local_tools, backend)
        run_name = f"panel:{label}"
        seats.append(
            PanelSeat(
                index,
                label,
                label != model_label(model),
                answering.with_config(run_name=run_name),
                researching.with_config(run_name=run_name) if researching else None,
            )
        )

    schema = (analysis_limits or AnalysisLimits()).json_schema()
    judge_entry = judge or params.model or outer_model or params.judge
    judge_model = resolve_model(judge_entry, backend)
    judges = [
        _judge_seat(
            judge_model,
            "judge",
            params,
            _completion_limit(params, judge_entry),
            schema,
            specs,
            local_tools,
            backend,
        )
    ]
    if fallback_judge is not None:
        fallback = resolve_model(fallback_judge, backend)
        limit = _completion_limit(params, fallback_judge)
        judges.append(
            _judge_seat(fallback, "judge:fallback", params, limit, schema, (), (), backend)
        )

    synthesizer_label = synthesizer = None
    if synthesize:
        outer = resolve_model(outer_model, backend) if outer_model else judge_model
        synthesizer_label = model_label(outer)
        limit = _completion_limit(params, outer_model or judge_entry)
        synthesizer = configure_inner_call(outer, max_tokens=limit, depth=None).with_config(
            run_name="synthesis"
        )
    return FusionSetup(
        parameters=params,
        limits=run_limits,
        panel=tuple(seats),
        judges=tuple(judges),
        synthesizer_label=synthesizer_label,
        synthesizer=synthesizer,
        tools=research_tool_node(local_tools),
        anonymize_judge=anonymize_judge,
        judge_shuffle_seed=judge_shuffle_seed,
        stream_panel_tokens=stream_panel_tokens,
        cascade=run_cascade,
    )


def check_panel(
    seats: int, limits: FusionLimits, cascade: Cascade | Mapping[str, Any] | None
) -> Cascade | None:
    """The panel's size against its bounds, the quorum and the cascade (no model resolved:
    `FusionTool` and `ChatFusion` check it at construction)."""
    if not MIN_PANEL <= seats <= MAX_PANEL:
        raise FusionParameterError(
            [f"panel = {seats} models; allowed: {MIN_PANEL} to {MAX_PANEL} models"]
        )
    if limits.min_successful > seats:
        raise FusionParameterError(
            [
                f"min_successful = {limits.min_successful}: more than the panel's "
                f"{seats} models; allowed: 1 to {seats}"
            ]
        )
    return _checked_cascade(cascade_from(cascade), seats, limits)


def _checked_cascade(cascade: Cascade | None, seats: int, limits: FusionLimits) -> Cascade | None:
    """A cascade needs seats left to escalate to, and a first stage that can meet the quorum."""
    if cascade is None:
        return None
    check_cascade(cascade, seats)
    if limits.min_successful > cascade.first:
        raise FusionParameterError(
            [
                f"cascade.first = {cascade.first} is below min_successful = "
                f"{limits.min_successful}: the first seats could never be judged; raise "
                "cascade.first or lower min_successful"
            ]
        )
    return cascade


def seat_labels(names: Sequence[str]) -> list[str]:
    """Each seat's label: its model's name, or `name#k` for the k-th seat of a model that
    sits more than once, so that the judge (and the user) can tell the seats apart."""
    counts = Counter(names)
    seen: Counter[str] = Counter()
    labels = []
    for name in names:
        seen[name] += 1
        labels.append(f"{name}#{seen[name]}" if counts[name] > 1 else name)
    return labels


def _cache_control(
    params: FusionParameters, model: BaseChatModel, backend: OpenAICompatibleBackend
) -> CacheControl | None:
    """The contract's `cache_control`, for models on an endpoint that knows it (OpenRouter,
    whose server-side tools other servers do not run either)."""
    return params.cache_control if runs_hosted_tools(model, backend) else None


def _completion_limit(params: FusionParameters, entry: ModelLike) -> int | None:
    """`max_completion_tokens` for a model we resolved from a slug, or when set explicitly;
    a chat model instance you pass otherwise keeps its own limit."""
    explicit = "max_completion_tokens" in params.model_fields_set
    return params.max_completion_tokens if explicit or isinstance(entry, str) else None


def _judge_seat(
    model: BaseChatModel,
    run_name: str,
    params: FusionParameters,
    max_tokens: int | None,
    schema: dict[str, Any],
    specs: Sequence[ToolSpec],
    local_tools: Sequence[BaseTool],
    backend: OpenAICompatibleBackend,
) -> JudgeSeat:
    configured = configure_inner_call(
        model,
        temperature=0.0,  # a repeatable analysis
        max_tokens=max_tokens,
        reasoning=params.reasoning,
        cache_control=_cache_control(params, model, backend),
    )
    # The model run inside structured output is named too, so a trace reads `judge`. Its
    # call is never streamed (nobody reads the analysis token by token): a streamed
    # structured call loses the backend's reported cost (langchain-openai's last chunk
    # keeps only the token counts), and the run's cost with it.
    named = configured.model_copy(update={"name": run_name, "disable_streaming": True})
    research = bind_judge_tools(configured, schema, specs, local_tools, backend)
    return JudgeSeat(
        label=model_label(model),
        structured=structured_judge(named, schema).with_config(run_name=run_name),
        research=research.with_config(run_name=run_name) if research else None,
    )


def _parameters(parameters: FusionParameters | Mapping[str, Any] | None) -> FusionParameters:
    if parameters is None:
        return FusionParameters()
    if isinstance(parameters, FusionParameters):
        return parameters
    return FusionParameters.from_json(parameters)
