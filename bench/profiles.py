"""Latency profiles of the scripted models, and the deliberations built on them.

Every benchmark model has its own name, so one server process serves every figure and a
request log tells the stages apart by model: `<set>-p<i>` panelists, `<set>-judge`,
`<set>-outer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import Runnable
from pydantic import SecretStr

from langchain_fusion import ChatFusion, create_fusion_graph
from langchain_fusion.backends import OpenAICompatibleBackend
from langchain_fusion.testing import ModelScript

PROMPT = "What are the strongest arguments for and against a four-day work week?"
API_KEY = "bench"


@dataclass(frozen=True)
class Latency:
    """Time to first token (s) and tokens per second (None: everything at once)."""

    ttft: float = 0.0
    tps: float | None = None

    def slower(self, factor: float) -> Latency:
        """The same model `factor` times slower in both respects."""
        return Latency(self.ttft * factor, None if self.tps is None else self.tps / factor)

    def scaled(self, factor: float) -> Latency:
        """Every delay multiplied by `factor` (0.1: ten times faster)."""
        return self.slower(factor)

    def as_json(self) -> dict[str, float | None]:
        return {"time_to_first_token": self.ttft, "tokens_per_second": self.tps}


@dataclass(frozen=True)
class ModelSet:
    """A panel, a judge and an outer model with their latencies, under one name prefix."""

    name: str
    panel_latency: tuple[Latency, ...]
    judge_latency: Latency
    outer_latency: Latency

    @property
    def panel(self) -> list[str]:
        return [f"{self.name}-p{i}" for i in range(len(self.panel_latency))]

    @property
    def judge(self) -> str:
        return f"{self.name}-judge"

    @property
    def outer(self) -> str:
        return f"{self.name}-outer"

    def scripts(self) -> dict[str, ModelScript]:
        """Scripts for the server: default answers, auto tool calls for the outer model."""
        scripts = {
            model: _script(latency)
            for model, latency in zip(self.panel, self.panel_latency, strict=True)
        }
        scripts[self.judge] = _script(self.judge_latency)
        # "auto": on the first turn it calls the one tool it is offered (fusion), then
        # answers in text; a request without tools (the forced path) gets text at once.
        scripts[self.outer] = _script(self.outer_latency, tool_calls="auto")
        return scripts

    def describe(self) -> dict[str, Any]:
        return {
            "panel": {
                m: lat.as_json() for m, lat in zip(self.panel, self.panel_latency, strict=True)
            },
            "judge": self.judge_latency.as_json(),
            "outer": self.outer_latency.as_json(),
        }


def _script(latency: Latency, **kwargs: Any) -> ModelScript:
    return ModelScript(time_to_first_token=latency.ttft, tokens_per_second=latency.tps, **kwargs)


# Panelists of different speeds, so that the slowest one decides the panel stage. The
# answers are ~45 tokens, the judge's JSON ~90, so a panel stage takes 0.4-0.8 s.
PANEL_LATENCIES = tuple(Latency(ttft=0.15 + 0.03 * i, tps=110.0 - 6.0 * i) for i in range(8))
JUDGE_LATENCY = Latency(ttft=0.2, tps=300.0)
OUTER_LATENCY = Latency(ttft=0.1, tps=150.0)
ZERO = Latency()
# The straggler figure: panelists of ~0.2 s, one of them ten times slower (~2 s).
STRAGGLER_FAST = Latency(ttft=0.05, tps=300.0)
STRAGGLER_JUDGE = Latency(ttft=0.05, tps=600.0)


def realistic(name: str, panel_size: int, scale: float = 1.0) -> ModelSet:
    """A panel of `panel_size` with scaled-down but realistic latencies (`scale` < 1:
    faster still, for a quick run)."""
    return ModelSet(
        name,
        tuple(latency.scaled(scale) for latency in PANEL_LATENCIES[:panel_size]),
        JUDGE_LATENCY.scaled(scale),
        OUTER_LATENCY.scaled(scale),
    )


def instant(name: str, panel_size: int) -> ModelSet:
    """Zero latency everywhere: the client's CPU is all that is left to measure."""
    return ModelSet(name, (ZERO,) * panel_size, ZERO, ZERO)


def straggling(
    name: str, panel_size: int = 3, factor: float = 10.0, scale: float = 1.0
) -> ModelSet:
    """Fast panelists, and a last one `factor` times slower."""
    fast = STRAGGLER_FAST.scaled(scale)
    panel = (fast,) * (panel_size - 1) + (fast.slower(factor),)
    quick = STRAGGLER_JUDGE.scaled(scale)
    return ModelSet(name, panel, quick, quick)


def backend(base_url: str) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(base_url=base_url, api_key=SecretStr(API_KEY), max_retries=0)


def chat_fusion(
    models: ModelSet, base_url: str, *, forced: bool = True, **extra: Any
) -> ChatFusion:
    """`ChatFusion` on the model set, research off (`tools=[]`), no retries."""
    return ChatFusion(
        analysis_models=list(models.panel),
        judge_model=models.judge,
        outer_model=models.outer,
        base_url=base_url,
        api_key=SecretStr(API_KEY),
        max_retries=0,
        tools=[],
        tool_choice="required" if forced else None,
        **extra,
    )


def fusion_graph(models: ModelSet, base_url: str, **extra: Any) -> Runnable[Any, Any]:
    """The standalone graph (panel, judge, synthesis) on the model set, research off."""
    parameters: Mapping[str, Any] = {
        "analysis_models": list(models.panel),
        "model": models.judge,
        "tools": [],
    }
    return create_fusion_graph(
        parameters, outer_model=models.outer, backend=backend(base_url), **extra
    )


def graph_input(prompt: str = PROMPT) -> dict[str, Any]:
    return {"messages": [("user", prompt)]}
