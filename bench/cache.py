"""Figure 6: a repeated identical deliberation with a LangChain cache set.

Counts the requests the server receives for the first and for the repeated run, through
`ChatFusion.ainvoke`, `ChatFusion.astream` and the standalone graph's `ainvoke`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.caches import InMemoryCache
from langchain_core.globals import get_llm_cache, set_llm_cache

from bench.config import BenchConfig
from bench.profiles import chat_fusion, fusion_graph, graph_input, instant
from bench.server import ServerProcess


async def _requests(server: ServerProcess, call: Callable[[], Awaitable[Any]]) -> list[str]:
    server.reset()
    await call()
    return [timing.model for timing in server.timings()]


def _call(entry: str, server: ServerProcess, prompt: str) -> Callable[[], Awaitable[Any]]:
    """One deliberation through `entry`, on a fresh model (a fresh `InMemoryCache` is set)."""
    models = instant("cache", 3)
    if entry == "graph.ainvoke":
        graph = fusion_graph(models, server.base_url)
        return lambda: graph.ainvoke(graph_input(prompt))
    llm = chat_fusion(models, server.base_url, forced=True)
    if entry == "ChatFusion.astream":

        async def stream() -> list[Any]:
            return [chunk async for chunk in llm.astream(prompt)]

        return stream
    return lambda: llm.ainvoke(prompt)


ENTRIES = (
    ("ChatFusion.ainvoke", "Cache test one: is tea better than coffee?"),
    ("ChatFusion.astream", "Cache test two: is rain better than snow?"),
    ("graph.ainvoke", "Cache test three: are cats better than dogs?"),
)


async def run(server: ServerProcess, config: BenchConfig) -> dict[str, Any]:
    server.set_scripts(instant("cache", 3).scripts())
    previous = get_llm_cache()
    rows: list[dict[str, Any]] = []
    try:
        for entry, prompt in ENTRIES:
            set_llm_cache(InMemoryCache())  # a fresh cache per entry point
            call = _call(entry, server, prompt)
            first = await _requests(server, call)
            second = await _requests(server, call)
            rows.append(
                {
                    "entry": entry,
                    "first_run_requests": len(first),
                    "repeat_requests": len(second),
                    "repeat_models": second,
                }
            )
    finally:
        set_llm_cache(previous)
    return {
        "figure": "cache",
        "title": "Cache: a repeated identical deliberation with InMemoryCache set",
        "goal": "no model call on the repeat",
        "status": "ok",
        "met": rows[0]["repeat_requests"] == 0,
        "rows": rows,
    }
