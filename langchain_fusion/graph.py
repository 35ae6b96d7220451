"""`create_fusion_graph`: panel → judge → synthesis as a compiled LangGraph graph."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial, update_wrapper
from typing import Any

from langchain_core.runnables import RunnableLambda
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer

from langchain_fusion import nodes
from langchain_fusion.backends import ModelLike, OpenAICompatibleBackend
from langchain_fusion.configuration import FusionConfiguration
from langchain_fusion.limits import FusionLimits
from langchain_fusion.parameters import FusionParameters
from langchain_fusion.result import AnalysisLimits
from langchain_fusion.state import FusionState, InputState, OutputState

DEPTH_METADATA_KEY = "fusion_depth"
"""Run metadata set on every deliberation; inherited by anything run inside it."""


def create_fusion_graph(
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
    checkpointer: Checkpointer = None,
    name: str = "fusion",
) -> CompiledStateGraph[FusionState, None, InputState, OutputState]:
    """Build the deliberation graph.

    Args:
        parameters: `FusionParameters`, or the hosted service's JSON (server-tool form or a
            bare parameters object). Validated here, before any model is called.
        panel: Slugs or chat model instances that override `analysis_models`.
        judge: A slug or chat model for the judge; default `parameters.model`, else the
            outer model, else the preset's judge.
        outer_model: The model that writes the final answer; default the judge.
        synthesize: False for the tool form: the graph ends after the judge, and the
            calling model writes the answer itself.
        backend: Where slugs run; default OpenRouter (`OPENROUTER_BASE_URL`,
            `OPENROUTER_API_KEY`).
        analysis_limits: Tighter bounds on the judge's schema, for small local judges.
        research_tools: Your own LangChain tools for panelists and the judge, in place of
            the web tools that `parameters.tools` names (`tools: []` still turns research
            off). On OpenRouter the web tools run server-side; elsewhere, local
            `web_search` (when a provider is configured) and `web_fetch` stand in.
        limits: `FusionLimits` (or its fields as a dict): `min_successful`,
            `straggler_grace`, `deadline` (default 300 s), `max_total_tokens`, `max_cost`,
            `prices`.
        fallback_judge: A slug or chat model asked when the judge fails.

    The graph takes `{"messages": [...]}` and returns `messages` (plus the final answer
    when synthesising), `result` (a `FusionResult`) and `answer`. Progress events stream
    on `stream_mode="custom"`.
    """
    configuration = FusionConfiguration.build(
        parameters,
        panel=panel,
        judge=judge,
        outer_model=outer_model,
        synthesize=synthesize,
        backend=backend,
        analysis_limits=analysis_limits,
        research_tools=research_tools,
        limits=limits,
        fallback_judge=fallback_judge,
    )
    return build_graph(configuration, checkpointer=checkpointer, name=name)


def build_graph(
    configuration: FusionConfiguration,
    *,
    checkpointer: Checkpointer = None,
    name: str = "fusion",
) -> CompiledStateGraph[FusionState, None, InputState, OutputState]:
    """Wire the nodes for an already resolved configuration."""
    bind = partial(_bound, configuration=configuration)
    builder = StateGraph(FusionState, input_schema=InputState, output_schema=OutputState)
    builder.add_node("start", bind(nodes.start))
    builder.add_node(nodes.PANELIST, bind(nodes.panelist, nodes.apanelist))
    builder.add_node(nodes.JUDGE, bind(nodes.judge, nodes.ajudge))
    builder.add_edge(START, "start")
    builder.add_conditional_edges(
        "start", _named(nodes.dispatch_panel, configuration), [nodes.PANELIST]
    )
    builder.add_edge(nodes.PANELIST, nodes.JUDGE)
    if configuration.synthesizer is not None:
        builder.add_node(nodes.SYNTHESIS, bind(nodes.synthesis, nodes.asynthesis))
        builder.add_conditional_edges(
            nodes.JUDGE,
            _named(nodes.route_after_judge, configuration),
            [nodes.SYNTHESIS, END],
        )
        builder.add_edge(nodes.SYNTHESIS, END)
    else:
        builder.add_edge(nodes.JUDGE, END)
    graph = builder.compile(checkpointer=checkpointer, name=name)
    # Every run carries the set-up in its trace; `fusion_depth` also marks what runs inside
    # a deliberation, where the fusion tool refuses to run again.
    return graph.with_config(metadata=run_metadata(configuration), tags=["fusion"])


def run_metadata(configuration: FusionConfiguration) -> dict[str, Any]:
    """What a trace records about a deliberation: panel, judge, preset and depth."""
    return {
        DEPTH_METADATA_KEY: 1,
        "fusion_panel": [seat.label for seat in configuration.panel],
        "fusion_judge": configuration.judge_label,
        "fusion_preset": configuration.parameters.preset,
        "fusion_max_tool_calls": configuration.parameters.max_tool_calls,
    }


def _named(func: Callable[..., Any], configuration: FusionConfiguration) -> Callable[..., Any]:
    """A routing function with its configuration bound, keeping its name for traces."""
    return update_wrapper(partial(func, configuration=configuration), func)


def _bound(
    func: Callable[..., Any],
    afunc: Callable[..., Any] | None = None,
    *,
    configuration: FusionConfiguration,
) -> RunnableLambda[Any, Any]:
    """A node with its configuration bound, native in both sync and async runs."""
    return RunnableLambda(
        partial(func, configuration=configuration),
        afunc=partial(afunc, configuration=configuration) if afunc else None,
        name=func.__name__,
    )
