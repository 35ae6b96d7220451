"""Figure 5: one panelist ten times slower than the rest; p95 with and without the
straggler policy (`min_successful` + a grace period, after which the judge starts
without the slow panelist).

The policy is looked up at run time: a `FusionLimits` (in `langchain_fusion.limits`)
with `min_successful` and `straggler_grace`, accepted as `limits=` by `ChatFusion` (or
else by `create_fusion_graph`), or those two as keyword arguments. When the library does
not expose it, the figure says so ("not available: <reason>") and only the run without the
policy is measured.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.common import critical_path, now, percentile, rounded
from bench.config import BenchConfig
from bench.profiles import (
    PROMPT,
    ModelSet,
    chat_fusion,
    fusion_graph,
    graph_input,
    straggling,
)
from bench.server import ServerProcess
from langchain_fusion import ChatFusion, create_fusion_graph

POLICY_FIELDS = ("min_successful", "straggler_grace")
Deliberation = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class PolicyApi:
    """Where the library takes the straggler policy."""

    target: str
    """`ChatFusion` or `create_fusion_graph`."""
    style: str
    """`limits` (a `FusionLimits` object) or `kwargs` (the two fields as arguments)."""
    limits_class: Any = None

    def arguments(self, min_successful: int, grace: float) -> dict[str, Any]:
        values = {"min_successful": min_successful, "straggler_grace": grace}
        if self.style == "limits":
            return {"limits": self.limits_class(**values)}
        return values


def _accepts(target: str) -> set[str]:
    if target == "ChatFusion":
        return set(ChatFusion.model_fields)
    return set(inspect.signature(create_fusion_graph).parameters)


def detect_policy() -> tuple[PolicyApi | None, str]:
    """The library's straggler policy, or why it cannot be used yet."""
    limits_class: Any = None
    reason = ""
    try:
        module = importlib.import_module("langchain_fusion.limits")
    except ImportError:
        reason = "langchain_fusion.limits does not exist"
    else:
        limits_class = getattr(module, "FusionLimits", None)
        fields = set(getattr(limits_class, "model_fields", {}) or {})
        if limits_class is None:
            reason = "langchain_fusion.limits has no FusionLimits"
        elif not set(POLICY_FIELDS) <= fields:
            reason = f"FusionLimits lacks {sorted(set(POLICY_FIELDS) - fields)}"
    for target in ("ChatFusion", "create_fusion_graph"):
        accepted = _accepts(target)
        if limits_class is not None and not reason and "limits" in accepted:
            return PolicyApi(target, "limits", limits_class), ""
        if set(POLICY_FIELDS) <= accepted:
            return PolicyApi(target, "kwargs"), ""
    if not reason:
        reason = (
            "FusionLimits(min_successful, straggler_grace) exists, but neither ChatFusion nor "
            "create_fusion_graph accepts limits= (or min_successful=/straggler_grace=) yet"
        )
    return None, reason


def _runner(target: str, models: ModelSet, base_url: str, **extra: Any) -> Deliberation:
    """One deliberation returning the contract's result JSON."""
    if target == "ChatFusion":
        llm = chat_fusion(models, base_url, forced=True, **extra)

        async def chat() -> dict[str, Any]:
            message = await llm.ainvoke(PROMPT)
            result = message.response_metadata.get("fusion_result")
            return result if isinstance(result, dict) else {}

        return chat
    graph = fusion_graph(models, base_url, **extra)

    async def standalone() -> dict[str, Any]:
        output = await graph.ainvoke(graph_input())
        result = output.get("result")
        return result.model_dump(mode="json") if result is not None else {}

    return standalone


async def _sample(
    server: ServerProcess, deliberate: Deliberation, samples: int, batch: int
) -> tuple[list[float], list[dict[str, Any]]]:
    async def timed() -> tuple[float, dict[str, Any]]:
        started = now()
        result = await deliberate()
        return now() - started, result

    await deliberate()  # warm-up
    server.reset()
    latencies: list[float] = []
    results: list[dict[str, Any]] = []
    while len(latencies) < samples:
        size = min(batch, samples - len(latencies))
        for latency, result in await asyncio.gather(*(timed() for _ in range(size))):
            latencies.append(latency)
            results.append(result)
    return latencies, results


def _summary(latencies: list[float]) -> dict[str, Any]:
    return {
        "samples": len(latencies),
        "p50_s": rounded(percentile(latencies, 50)),
        "p95_s": rounded(percentile(latencies, 95)),
        "max_s": rounded(max(latencies)),
    }


async def run(server: ServerProcess, config: BenchConfig) -> dict[str, Any]:
    models = straggling("sg", 3, factor=10.0, scale=config.scale)
    server.set_scripts(models.scripts())
    slow = models.panel[-1]
    api, reason = detect_policy()

    # The physical limit without the policy: one sequential run, from the server's log.
    probe = _runner("ChatFusion", models, server.base_url)
    await probe()
    server.reset()
    started = now()
    await probe()
    reference = critical_path(models, server.timings(), started, now())

    target = api.target if api is not None else "ChatFusion"
    without = _runner(target, models, server.base_url)
    latencies, _ = await _sample(server, without, config.straggler_samples, config.straggler_batch)
    result: dict[str, Any] = {
        "figure": "straggler",
        "title": "Straggler: one panelist 10x slower, p95 with and without the policy",
        "goal": "p95 with the policy near the fast panel's critical path",
        "latency_profile": models.describe(),
        "physical_without_policy_s": rounded(reference.physical),
        "without_policy": _summary(latencies),
    }
    if api is None:
        result.update({"status": f"not available: {reason}", "met": None})
        return result

    arguments = api.arguments(min_successful=len(models.panel) - 1, grace=config.straggler_grace)
    try:
        with_policy = _runner(api.target, models, server.base_url, **arguments)
        await with_policy()
        server.reset()
        started = now()
        await with_policy()
        finished = now()
        # The straggler's request was cut off: its stage time is the fast panelists'.
        fast = critical_path(models, server.timings(), started, finished)
        policy_latencies, results = await _sample(
            server, with_policy, config.straggler_samples, config.straggler_batch
        )
    except Exception as error:  # exposed but broken: a failure, not "not available"
        result.update({"status": f"failed: {type(error).__name__}: {error}", "met": None})
        return result
    dropped = sum(
        1
        for outcome in results
        if slow not in {response.get("model") for response in outcome.get("responses", [])}
    )
    p95_with = percentile(policy_latencies, 95)
    p95_without = percentile(latencies, 95)
    result.update(
        {
            "status": "ok",
            "api": f"{api.target}({', '.join(arguments)}=...)",
            "policy": {"min_successful": len(models.panel) - 1, "grace_s": config.straggler_grace},
            "with_policy": _summary(policy_latencies),
            "physical_with_policy_s": rounded(fast.physical + config.straggler_grace),
            "single_run_with_policy_s": rounded(fast.wall),
            "straggler_left_out": f"{dropped}/{len(results)}",
            "p95_ratio_with_over_without": rounded(p95_with / p95_without, 3),
            "met": p95_with < p95_without and dropped == len(results),
        }
    )
    return result
