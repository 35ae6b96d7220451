"""Figure 2: CPU and wall time per deliberation, our code against a bare SDK ensemble.

Zero latency on the server (which runs in its own process), so that the client's own work
is what the clock sees. Four contenders, layer by layer: the bare SDK ensemble, the same
chain over the graph's LangChain models, the standalone graph, and `ChatFusion` (forced).
All send the same requests (checked on the server's log). They run in interleaved batches,
in a rotating order, so that the machine's noise falls on all of them alike.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.baseline import BareEnsemble, LangChainEnsemble
from bench.common import median, now, rounded
from bench.config import BenchConfig
from bench.profiles import (
    API_KEY,
    PROMPT,
    ModelSet,
    backend,
    chat_fusion,
    fusion_graph,
    graph_input,
    instant,
)
from bench.server import ServerProcess, Timing
from langchain_fusion.graph import build_setup

GOAL = 1.3
Contender = Callable[[], Awaitable[Any]]


@dataclass
class Contenders:
    """The four ways to run one deliberation, on one model set."""

    models: ModelSet
    entries: dict[str, Contender]
    bare: BareEnsemble
    lc_models: LangChainEnsemble

    async def match_requests(self, server: ServerProcess) -> dict[str, bool]:
        """Stream where `ChatFusion` streams, so that every contender sends the same calls."""
        server.reset()
        await self.entries["chat_fusion"]()
        timings = server.timings()

        def streamed(models: set[str]) -> bool:
            return any(t.stream for t in timings if t.model in models)

        pattern = {
            "panel": streamed(set(self.models.panel)),
            "judge": streamed({self.models.judge}),
            "outer": streamed({self.models.outer}),
        }
        for ensemble in (self.bare, self.lc_models):
            ensemble.stream_panel = pattern["panel"]
            ensemble.stream_outer = pattern["outer"]
        return pattern


def contenders(
    server: ServerProcess, panel_size: int, models: ModelSet | None = None
) -> Contenders:
    """From bare code to `ChatFusion`, layer by layer, on zero-latency models (or `models`)."""
    models = models or instant(f"cpu{panel_size}", panel_size)
    server.set_scripts(models.scripts())
    bare = BareEnsemble.create(server.base_url, API_KEY, models.panel, models.judge, models.outer)
    setup = build_setup(
        {"analysis_models": list(models.panel), "model": models.judge, "tools": []},
        outer_model=models.outer,
        backend=backend(server.base_url),
    )
    lc_models = LangChainEnsemble(setup)
    chat = chat_fusion(models, server.base_url, forced=True)
    graph = fusion_graph(models, server.base_url)
    entries: dict[str, Contender] = {
        "bare_sdk": lambda: bare.deliberate(PROMPT),
        "langchain_models": lambda: lc_models.deliberate(PROMPT),
        "graph": lambda: graph.ainvoke(graph_input()),
        "chat_fusion": lambda: chat.ainvoke(PROMPT),
    }
    return Contenders(models, entries, bare, lc_models)


def _signature(timings: list[Timing]) -> list[tuple[str, bool, bool]]:
    return sorted((t.model, t.stream, t.json_schema) for t in timings)


async def run(server: ServerProcess, config: BenchConfig) -> dict[str, Any]:
    setup = contenders(server, config.overhead_panel)
    pattern = await setup.match_requests(server)
    entries = setup.entries
    signatures: dict[str, list[tuple[str, bool, bool]]] = {}
    for name, deliberate in entries.items():
        for _ in range(3):  # warm-up: lazy imports, caches, connections
            await deliberate()
        server.reset()
        await deliberate()
        signatures[name] = _signature(server.timings())

    cpu: dict[str, list[float]] = {name: [] for name in entries}
    wall: dict[str, list[float]] = {name: [] for name in entries}
    server_cpu: dict[str, list[float]] = {name: [] for name in entries}
    names = list(entries)
    n = config.overhead_per_round
    for round_index in range(config.overhead_rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            deliberate = entries[name]
            gc.collect()
            server_before = server.stats().cpu_seconds
            cpu_before, wall_before = time.process_time(), now()
            for _ in range(n):
                await deliberate()
            cpu[name].append((time.process_time() - cpu_before) / n)
            wall[name].append((now() - wall_before) / n)
            server_cpu[name].append((server.stats().cpu_seconds - server_before) / n)
    await setup.bare.aclose()

    base_cpu, base_wall = median(cpu["bare_sdk"]), median(wall["bare_sdk"])
    per: dict[str, dict[str, Any]] = {}
    for name in names:
        per[name] = {
            "requests_per_deliberation": len(signatures[name]),
            "cpu_ms": rounded(median(cpu[name]) * 1000, 2),
            "wall_ms": rounded(median(wall[name]) * 1000, 2),
            "cpu_ratio": rounded(median(cpu[name]) / base_cpu, 3),
            "wall_ratio": rounded(median(wall[name]) / base_wall, 3),
            "server_cpu_ms": rounded(median(server_cpu[name]) * 1000, 2),
            "cpu_ms_per_batch": [round(x * 1000, 2) for x in cpu[name]],
        }
    ratio = per["chat_fusion"]["cpu_ratio"]
    reference = signatures["chat_fusion"]
    return {
        "figure": "overhead",
        "title": "Overhead against bare code (CPU per deliberation, zero latency)",
        "goal": f"CPU <= {GOAL}x the bare SDK ensemble",
        "status": "ok",
        "met": ratio is not None and ratio <= GOAL,
        "panel": config.overhead_panel,
        "deliberations_per_contender": config.overhead_rounds * n,
        "streamed": pattern,
        "same_requests": all(signature == reference for signature in signatures.values()),
        "contenders": per,
    }
