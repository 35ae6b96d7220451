"""Figure 7: a deliberation on the embedded SmolLM2 panel against one call of that model.

The single call is panel seat 0 exactly (same prompt, same seed, same `max_tokens`, same
sampling settings). The deliberation is `create_local_fusion_graph`: three seats in
parallel on llama.cpp's slots, the judge, the synthesis. Stage times come from the chat
model start/end events.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import now, rounded
from bench.config import BenchConfig
from bench.profiles import PROMPT, graph_input


async def _stages(graph: Any) -> tuple[float, dict[str, float], dict[str, Any]]:
    """Run the graph once; wall time, per-stage wall time and the result's usage."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    output: dict[str, Any] = {}
    started = now()
    async for event in graph.astream_events(graph_input(), version="v2"):
        kind, name = event["event"], str(event.get("name", ""))
        stage = "panel" if name.startswith("panel:") else name
        if kind == "on_chat_model_start":
            starts.setdefault(stage, now())
        elif kind == "on_chat_model_end":
            ends[stage] = now()
        elif kind == "on_chain_end" and event.get("parent_ids") == []:
            output = event["data"].get("output") or {}
    wall = now() - started
    stages = {stage: ends[stage] - starts[stage] for stage in starts if stage in ends}
    result = output.get("result")
    usage = result.usage.model_dump(mode="json") if result is not None else {}
    return wall, stages, usage


async def run(config: BenchConfig) -> dict[str, Any]:
    base: dict[str, Any] = {
        "figure": "local_model",
        "title": "Local model: SmolLM2 deliberation / one single call of the same model",
        "goal": "report (a deliberation is N+2 calls)",
    }
    try:
        from langchain_fusion.local import (
            LOCAL_PANEL_TOKENS,
            LocalModelServer,
            LocalModelUnavailable,
            create_local_fusion_graph,
        )
    except ImportError as error:
        return {**base, "status": f"not available: {error}", "met": None}
    try:
        server = LocalModelServer().start()
    except LocalModelUnavailable as error:
        return {**base, "status": f"not available: {error}", "met": None}
    try:
        backend = server.backend()
        single = backend.chat_model(server.model_name, panel_index=0).model_copy(
            update={"max_tokens": LOCAL_PANEL_TOKENS}
        )
        await single.model_copy(update={"max_tokens": 8}).ainvoke("Hello")  # warm-up
        graph = create_local_fusion_graph(server)
        singles: list[float] = []
        single_tokens = 0
        runs = []
        cpu = 0.0
        # Alternated, best of `local_reps`: llama.cpp's threads suffer most from other load.
        for _ in range(config.local_reps):
            started = now()
            message: Any = None
            async for chunk in single.astream(PROMPT):  # streamed, as the panel's calls are
                message = chunk if message is None else message + chunk
            singles.append(now() - started)
            single_tokens = (getattr(message, "usage_metadata", None) or {}).get("output_tokens", 0)
            cpu_before = time.process_time()
            runs.append(await _stages(graph))
            cpu += (time.process_time() - cpu_before) / config.local_reps
    finally:
        server.stop()
    single_wall = min(singles)
    wall, stages, usage = min(runs, key=lambda run: run[0])
    return {
        **base,
        "status": "ok",
        "met": None,
        "max_tokens": LOCAL_PANEL_TOKENS,
        "single_call_s": rounded(single_wall, 3),
        "single_call_output_tokens": single_tokens,
        "deliberation_s": rounded(wall, 3),
        "ratio": rounded(wall / single_wall, 2),
        "stages_s": {name: round(value, 3) for name, value in stages.items()},
        "output_tokens_ratio": rounded(
            ((usage.get("total") or {}).get("output_tokens", 0) or 0) / max(single_tokens, 1), 2
        ),
        "deliberation_usage": usage,
        "process_cpu_s_per_deliberation": rounded(cpu, 2),
        "note": "process CPU includes llama.cpp, which runs in this process",
    }
