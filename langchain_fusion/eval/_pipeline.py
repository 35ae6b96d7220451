"""Everything the harness needs from the pipeline's internals, in one place.

When the package's internals move, only this module changes. The rest of
`langchain_fusion.eval` uses the public API (`create_fusion_graph`, `FusionParameters`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.messages import AnyMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool

from langchain_fusion import (
    FusionParameters,
    OpenAICompatibleBackend,
    TokenUsage,
    create_fusion_graph,
)
from langchain_fusion.graph import build_seat_graph, build_setup
from langchain_fusion.graph.budget import approximate_tokens, estimate_budget
from langchain_fusion.graph.state import PanelOutcome
from langchain_fusion.limits import ModelPrice

Prices = Mapping[str, Mapping[str, float]]
"""USD per token by model: `{"model": {"prompt": 1e-6, "completion": 4e-6}}`."""


def prompt_tokens(messages: Sequence[BaseMessage]) -> int:
    """The pipeline's tokenizer-free estimate of a conversation's size."""
    return approximate_tokens(messages)


@dataclass(frozen=True)
class WorstCase:
    """The most one run of an arm on one item can spend."""

    calls: int
    input_tokens: int
    output_tokens: int
    cost: float | None


def worst_case(
    *,
    prompt: int,
    panel: Sequence[str],
    judge: str | None,
    synthesizer: str | None,
    max_completion_tokens: int,
    tool_steps: int,
    prices: Prices,
    judge_stages: int = 1,
) -> WorstCase:
    """The pipeline's own budget estimate (every tool step taken, the judge retried once,
    and asked `judge_stages` times: 2 for a cascade that judges its first seats);
    `judge=None` for arms without a judge (single models, the vote)."""
    estimate = estimate_budget(
        prompt_tokens=prompt,
        panel=list(panel),
        judge=judge or "",
        synthesizer=synthesizer,
        max_completion_tokens=max_completion_tokens,
        tool_steps=tool_steps,
        judge_tool_steps=tool_steps,
        prices={name: ModelPrice(**dict(price)) for name, price in prices.items()},
        judge_attempts=2 * judge_stages if judge else 0,
    )
    return WorstCase(estimate.calls, estimate.input_tokens, estimate.output_tokens, estimate.cost)


def cascade_judge_stages(cascade: Mapping[str, Any] | None) -> int:
    """How many times a run may ask the judge under `cascade` (as the pipeline counts it)."""
    if cascade is None:
        return 1
    from langchain_fusion.contract.cascade import Cascade

    return 2 if Cascade.model_validate(dict(cascade)).asks_judge_first else 1


def price_of(price: Mapping[str, float]) -> tuple[float, float]:
    """(prompt, completion) USD per token, validated as the pipeline validates prices."""
    checked = ModelPrice(**dict(price))
    return checked.prompt, checked.completion


@dataclass(frozen=True)
class SingleAnswer:
    """One model's answer (or failure) to one conversation, as a panelist gives it."""

    model: str
    content: str | None
    error: str | None
    usage: TokenUsage


class PanelSeats:
    """The seats of a panel, each answering alone exactly as it does in the panel: same
    settings (its seed too, on backends that seed per seat), same research tools and
    tool-step limit, same deadline; no judge, no synthesis."""

    def __init__(
        self,
        panel: Sequence[str],
        *,
        parameters: FusionParameters,
        backend: OpenAICompatibleBackend,
        research_tools: Sequence[BaseTool] | None,
        limits: Mapping[str, Any] | None,
    ) -> None:
        self.panel = list(panel)
        self._graph = build_seat_graph(
            build_setup(
                parameters,
                panel=self.panel,
                synthesize=False,
                backend=backend,
                research_tools=research_tools,
                limits=limits,
            )
        )

    async def answer(
        self, seat: int, messages: Sequence[BaseMessage], config: RunnableConfig | None = None
    ) -> SingleAnswer:
        """Seat `seat`'s answer to the conversation."""
        state: Any = {"messages": cast(list[AnyMessage], list(messages)), "seat": seat}
        update = await self._graph.ainvoke(state, config)
        outcome: PanelOutcome = update["panel_outcomes"][0]
        return SingleAnswer(outcome.model, outcome.content, outcome.error, outcome.usage)


def fusion_graph(
    *,
    parameters: FusionParameters,
    panel: Sequence[str],
    judge: str,
    backend: OpenAICompatibleBackend,
    research_tools: Sequence[BaseTool] | None,
    limits: Mapping[str, Any] | None,
    anonymize_judge: bool | None = None,
    judge_shuffle_seed: int | None = None,
    analysis_limits: Any = None,
    cascade: Mapping[str, Any] | None = None,
) -> Any:
    """The full pipeline (panel, judge, synthesis) through the public `create_fusion_graph`;
    the judge keywords are passed only when asked for."""
    extra: dict[str, Any] = {}
    if anonymize_judge is not None:
        extra["anonymize_judge"] = anonymize_judge
        if judge_shuffle_seed is not None:
            extra["judge_shuffle_seed"] = judge_shuffle_seed
    return create_fusion_graph(
        parameters,
        panel=list(panel),
        judge=judge,
        backend=backend,
        research_tools=research_tools,
        limits=limits,
        synthesize=True,
        analysis_limits=analysis_limits,
        cascade=cascade,
        **extra,
    )


def local_analysis_limits() -> Any:
    """The judge's schema bounds the embedded model's own graph uses."""
    from langchain_fusion.local import LOCAL_ANALYSIS_LIMITS

    return LOCAL_ANALYSIS_LIMITS
