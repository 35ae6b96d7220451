"""`create_fusion_graph`: panel → judge → synthesis as a compiled LangGraph graph.

```
START → start ─Send×N─▶ panelist ─▶ quorum ─met─▶ judge ─▶ conclude ─ok─▶ synthesis → END
                                           └not met────────▶ conclude ─else─────────▶ END
```
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Unpack

from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer, Send

from langchain_fusion.contract.cascade import describe_cascade
from langchain_fusion.contract.errors import refuse_unknown_keywords
from langchain_fusion.contract.parameters import MAX_PANEL, FusionParameters
from langchain_fusion.graph.cascade import add_cascade
from langchain_fusion.graph.context import FusionContext
from langchain_fusion.graph.judge import JUDGE, ajudge, judge
from langchain_fusion.graph.panel import PANELIST, apanelist, dispatch_panel, panelist, start
from langchain_fusion.graph.progress import (
    STREAM_PANEL_TOKENS_KEY,
    panel_tokens_wanted,
    requested_custom,
)
from langchain_fusion.graph.quorum import (
    CONCLUDE,
    QUORUM,
    conclude,
    quorum,
    quorum_met,
    synthesis_or_end,
)
from langchain_fusion.graph.setup import FusionSetup, SetupOptions, build_setup
from langchain_fusion.graph.state import FusionState, InputState, OutputState, PanelTask
from langchain_fusion.graph.synthesis import SYNTHESIS, asynthesis, synthesis
from langchain_fusion.limits import FusionLimits

DEPTH_METADATA_KEY = "fusion_depth"
"""Run metadata set on every deliberation; inherited by anything run inside it."""

FusionCompiled = CompiledStateGraph[FusionState, FusionContext, InputState, OutputState]


@refuse_unknown_keywords(
    {
        **{name: "parameters" for name in FusionParameters.model_fields},
        **{name: "limits" for name in FusionLimits.model_fields},
    },
    also=SetupOptions.__annotations__,
)
def create_fusion_graph(
    parameters: FusionParameters | Mapping[str, Any] | None = None,
    *,
    checkpointer: Checkpointer = None,
    name: str = "fusion",
    **options: Unpack[SetupOptions],
) -> FusionGraph:
    """Build the deliberation graph.

    Args:
        parameters: `FusionParameters`, or the hosted service's JSON (server-tool form or a
            bare parameters object). Validated here, before any model is called.
        checkpointer: LangGraph's; a thread's turns then deliberate afresh each time.
        options: The panel, judge and outer models, the backend, research tools, limits
            and judge settings (`SetupOptions`, documented in `graph/setup.py`): `panel`,
            `judge`, `outer_model`, `synthesize` (False for the tool form: the graph ends
            after the judge and the caller writes the answer), `backend`,
            `analysis_limits`, `research_tools`, `limits`, `fallback_judge`,
            `anonymize_judge`, `judge_shuffle_seed`, `stream_panel_tokens`.

    The graph takes `{"messages": [...]}` and returns `messages` (plus the final answer
    when synthesising), `result` (a `FusionResult`) and `answer`. Progress events stream
    on `stream_mode="custom"`; the panel's tokens (`panel.delta`) too when the call asks
    for `custom` or `stream_panel_tokens=True` (run as a node of another graph, the only
    way: LangGraph does not tell a subgraph publicly what its parent streams).
    """
    return build_graph(build_setup(parameters, **options), checkpointer=checkpointer, name=name)


def build_graph(
    setup: FusionSetup, *, checkpointer: Checkpointer = None, name: str = "fusion"
) -> FusionGraph:
    """Wire the steps for an already resolved set-up."""
    builder = StateGraph(
        FusionState,
        context_schema=FusionContext,
        input_schema=InputState,
        output_schema=OutputState,
    )
    builder.add_node("start", start)
    builder.add_node(PANELIST, _node(panelist, apanelist))
    builder.add_node(QUORUM, quorum)
    builder.add_node(JUDGE, _node(judge, ajudge))
    builder.add_node(CONCLUDE, conclude)
    builder.add_edge(START, "start")
    builder.add_conditional_edges("start", dispatch_panel, [PANELIST])
    builder.add_edge(PANELIST, QUORUM)
    if setup.cascade is None:
        builder.add_conditional_edges(QUORUM, quorum_met, [JUDGE, CONCLUDE])
        builder.add_edge(JUDGE, CONCLUDE)
    else:  # judge → agreement → conclude, or escalate → the remaining seats (graph/cascade.py)
        add_cascade(builder)
    if setup.synthesizer is not None:
        builder.add_node(SYNTHESIS, _node(synthesis, asynthesis))
        builder.add_conditional_edges(CONCLUDE, synthesis_or_end, [SYNTHESIS, END])
        builder.add_edge(SYNTHESIS, END)
    else:
        builder.add_edge(CONCLUDE, END)
    compiled = builder.compile(checkpointer=checkpointer, name=name)
    graph = FusionGraph.of(compiled, setup)
    # Every run carries the set-up in its trace; `fusion_depth` also marks what runs inside
    # a deliberation, where the fusion tool refuses to run again. The whole panel runs at
    # once on the sync path too (LangGraph's thread pool is otherwise cpu_count + 4).
    return graph.with_config(
        metadata=run_metadata(setup), tags=["fusion"], max_concurrency=2 * MAX_PANEL + 4
    )


def build_seat_graph(setup: FusionSetup) -> FusionGraph:
    """One seat of the panel answering alone, exactly as it does in the panel (its research
    tools, limits and events), with no judge: the single-model arms of an evaluation.

    Takes `{"messages": [...], "seat": i}`; returns `panel_outcomes` (one outcome).
    """
    builder = StateGraph(SeatState, context_schema=FusionContext, input_schema=SeatInput)
    builder.add_node(PANELIST, _node(panelist, apanelist))
    builder.add_conditional_edges(START, _to_seat, [PANELIST])
    builder.add_edge(PANELIST, END)
    compiled: Any = builder.compile(name="seat")
    return FusionGraph.of(compiled, setup)


@dataclass
class SeatInput(InputState):
    seat: int = 0


@dataclass
class SeatState(FusionState):
    seat: int = 0


def _to_seat(state: SeatState) -> list[Send]:
    return [Send(PANELIST, PanelTask(index=state.seat, messages=list(state.messages)))]


def run_metadata(setup: FusionSetup) -> dict[str, Any]:
    """What a trace records about a deliberation: panel, judge, preset and depth."""
    return {
        DEPTH_METADATA_KEY: 1,
        "fusion_panel": [seat.label for seat in setup.panel],
        "fusion_judge": setup.judge_label,
        "fusion_preset": setup.parameters.preset,
        "fusion_max_tool_calls": setup.parameters.max_tool_calls,
        **({"fusion_cascade": describe_cascade(setup.cascade)} if setup.cascade else {}),
    }


def _node(func: Any, afunc: Any) -> RunnableLambda[Any, Any]:
    """A step that runs natively in both sync and async runs."""
    return RunnableLambda(func, afunc=afunc, name=func.__name__)


class FusionGraph(FusionCompiled):
    """The compiled deliberation graph; each run gets a fresh `FusionContext`.

    LangGraph passes a run's context to every node; the caller need not give one: each
    `invoke`, `stream` (and their async forms) starts with a new clock and ledger, and
    knows from the stream modes asked for whether anyone listens to progress events.
    """

    setup: FusionSetup

    def __init__(self, *, setup: FusionSetup, **attributes: Any) -> None:
        super().__init__(**attributes)
        self.setup = setup

    @classmethod
    def of(cls, compiled: FusionCompiled, setup: FusionSetup) -> FusionGraph:
        # A subclass, not a wrapper: LangGraph's server serves only `Pregel` instances, a
        # run's stream modes are public only to `Pregel.stream`, and a graph wrapping this
        # one would hide the panel's events from a caller not streaming subgraphs. Rebuilt
        # from the compiled graph's attributes exactly as `Pregel.copy` and `with_config`
        # rebuild any graph (tests/test_fusion_graph.py fails if that ever changes).
        attributes = {k: v for k, v in vars(compiled).items() if k != "__orig_class__"}
        return cls(setup=setup, **attributes)

    def new_context(
        self, config: RunnableConfig | None = None, stream_mode: Any = None
    ) -> FusionContext:
        """A fresh context for one run: panel tokens when `stream_panel_tokens` says so,
        or (None) when the call streams `custom` or its caller asked for them."""
        configurable = (config or {}).get("configurable") or {}
        caller_streams = requested_custom(stream_mode) or bool(
            configurable.get(STREAM_PANEL_TOKENS_KEY)
        )
        tokens = panel_tokens_wanted(self.setup.stream_panel_tokens, caller_streams=caller_streams)
        return FusionContext.for_run(self.setup, stream_tokens=tokens)

    def stream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        context: Any = None,
        stream_mode: Any = None,
        **kwargs: Any,
    ) -> Iterator[Any]:
        if not isinstance(context, FusionContext):
            context = self.new_context(config, stream_mode)
        return super().stream(input, config, context=context, stream_mode=stream_mode, **kwargs)

    def astream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        context: Any = None,
        stream_mode: Any = None,
        **kwargs: Any,
    ) -> Any:
        if not isinstance(context, FusionContext):
            context = self.new_context(config, stream_mode)
        return super().astream(input, config, context=context, stream_mode=stream_mode, **kwargs)
