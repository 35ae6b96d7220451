"""Figure 1: a deliberation's wall time over the sum of its stages' slowest server times,
for `ainvoke` and for `invoke` (the sync path runs the whole panel at once too)."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.common import CriticalPath, critical_path, median, now, rounded
from bench.config import BenchConfig
from bench.profiles import PROMPT, ModelSet, chat_fusion, realistic
from bench.server import ServerProcess
from langchain_fusion import ChatFusion

GOAL = 1.05


CALLS = ("ainvoke", "invoke")


async def measure_once(
    server: ServerProcess, llm: ChatFusion, models: ModelSet, call: str = "ainvoke"
) -> CriticalPath:
    """One `ainvoke` (or `invoke`, in a thread of its own), timed on the client; its stages
    from the server's log."""
    server.reset()
    started = now()
    if call == "invoke":
        await asyncio.to_thread(llm.invoke, PROMPT)
    else:
        await llm.ainvoke(PROMPT)
    finished = now()
    return critical_path(models, server.timings(), started, finished)


async def run(server: ServerProcess, config: BenchConfig) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for size in config.panels:
        models = realistic(f"cp{size}", size, config.scale)
        server.set_scripts(models.scripts())
        for forced, call in ((forced, call) for forced in (True, False) for call in CALLS):
            llm = chat_fusion(models, server.base_url, forced=forced)
            cold = await measure_once(server, llm, models, call)  # lazy set-up included
            samples = [
                await measure_once(server, llm, models, call) for _ in range(config.critical_reps)
            ]
            expected = ["panel", "judge", "outer_answer"]
            if not forced:
                expected.insert(0, "outer_decide")
            stages = [s.name for s in samples[-1].stages]
            gaps = {
                name: rounded(median(s.gaps.get(name, 0.0) for s in samples) * 1000, 2)
                for name in samples[-1].gaps
            }
            rows.append(
                {
                    "panel": size,
                    "path": "forced" if forced else "outer decides",
                    "call": call,
                    "stages": stages,
                    "stages_ok": stages == expected,
                    "requests": sum(s.requests for s in samples[-1].stages),
                    "wall_s": rounded(median(s.wall for s in samples)),
                    "physical_s": rounded(median(s.physical for s in samples)),
                    "ratio": rounded(median(s.ratio for s in samples)),
                    "ratio_max": rounded(max(s.ratio for s in samples)),
                    "cold_ratio": rounded(cold.ratio),
                    "overhead_ms": rounded(
                        median((s.wall - s.physical) * 1000 for s in samples), 2
                    ),
                    "gaps_ms": gaps,
                    "samples": [s.as_json() for s in samples],
                }
            )
    worst = max((row["ratio"] or 0.0) for row in rows) if rows else None
    return {
        "figure": "critical_path",
        "title": "Critical-path ratio (wall / sum of slowest server time per stage)",
        "goal": f"<= {GOAL}",
        "status": "ok",
        "met": worst is not None and worst <= GOAL,
        "worst_ratio": worst,
        "latency_profiles": {
            str(size): realistic(f"cp{size}", size, config.scale).describe()
            for size in config.panels
        },
        "rows": rows,
    }
