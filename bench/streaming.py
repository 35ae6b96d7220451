"""Figure 4: from the judge's last byte to the caller's first token of the final answer.

`ChatFusion.astream`, forced. The floor is the outer model's own time to its first
content token (its scripted time to first token plus one token interval): what remains is
our code between the judge's reply and the outer call, and the delivery of the token.
"""

from __future__ import annotations

from typing import Any

from bench.common import median, now, rounded
from bench.config import BenchConfig
from bench.profiles import PROMPT, chat_fusion, realistic
from bench.server import ServerProcess
from langchain_fusion import ChatFusion


async def _once(server: ServerProcess, llm: ChatFusion, judge: str, outer: str) -> dict[str, float]:
    server.reset()
    first: float | None = None
    started = now()
    async for chunk in llm.astream(PROMPT):
        if first is None and chunk.text:
            first = now()
    finished = now()
    timings = server.timings()
    judge_request = next(t for t in timings if t.model == judge)
    outer_request = next(t for t in timings if t.model == outer)
    assert first is not None
    assert judge_request.completed_at is not None
    return {
        "judge_done_to_first_token": first - judge_request.completed_at,
        "judge_done_to_outer_request": outer_request.received_at - judge_request.completed_at,
        "wall": finished - started,
    }


async def run(server: ServerProcess, config: BenchConfig) -> dict[str, Any]:
    models = realistic("st", 3, config.scale)
    server.set_scripts(models.scripts())
    llm = chat_fusion(models, server.base_url, forced=True)
    await _once(server, llm, models.judge, models.outer)  # warm-up
    samples = [
        await _once(server, llm, models.judge, models.outer) for _ in range(config.stream_reps)
    ]
    latency = models.outer_latency
    floor = latency.ttft + (1.0 / latency.tps if latency.tps else 0.0)
    measured = median(s["judge_done_to_first_token"] for s in samples)
    gap = median(s["judge_done_to_outer_request"] for s in samples)
    return {
        "figure": "streaming",
        "title": "Streaming: judge's last byte to the caller's first answer token",
        "goal": "close to the outer model's own time to first token",
        "status": "ok",
        "met": None,
        "floor_ms": rounded(floor * 1000, 2),
        "measured_ms": rounded(measured * 1000, 2),
        "ratio": rounded(measured / floor, 3) if floor > 0 else None,
        "overhead_ms": rounded((measured - floor) * 1000, 2),
        "judge_done_to_outer_request_ms": rounded(gap * 1000, 2),
        "samples_ms": [
            {key: round(value * 1000, 2) for key, value in sample.items()} for sample in samples
        ],
    }
