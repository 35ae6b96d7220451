"""Does one big request stall every other? `/healthz` latency while `langchain-fusion serve`
runs a fusion request at the admission bound (2,000 messages, just under 4 MB of text),
against the same probe on the idle gateway in the same run (issue 18, point 6 of the
issue: the per-upstream-call message conversion).

Three processes: the scripted backend (`ServerProcess`), the gateway (the installed
`serve`, so that its event loop is its own), and this one, which sends the big request
(`--route`, streamed or not) and probes `/healthz` every 20 ms until it is answered.

    python -m bench.event_loop                     # chat.completions, not streamed
    python -m bench.event_loop --route responses --stream

The figure: the probe's p50 / p99 / max during the big request, and the ratio of its max
to the idle p50.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx

from bench.common import percentile
from bench.gateway import gateway_process, memory
from bench.profiles import ModelSet, realistic
from bench.server import ServerProcess
from langchain_fusion.server.admission import MAX_MESSAGES, MAX_TEXT_BYTES

PROBE_EVERY_S = 0.02
IDLE_PROBES = 100


def big_messages(count: int = MAX_MESSAGES, total: int = MAX_TEXT_BYTES) -> list[dict[str, Any]]:
    """`count` alternating user/assistant messages of ~`total` bytes of text in all."""
    size = total // count - 64
    messages = []
    for index in range(count - 1):
        role = "user" if index % 2 == 0 else "assistant"
        messages.append({"role": role, "content": f"m{index} " + "lorem ipsum " * (size // 12)})
    messages.append({"role": "user", "content": "Summarise the conversation."})
    return messages


def body(route: str, stream: bool) -> tuple[str, dict[str, Any]]:
    messages = big_messages()
    if route == "responses":
        fusion = {"model": "openrouter/fusion", "stream": stream, "max_output_tokens": 50}
        return "/responses", {**fusion, "input": messages}
    fusion = {"model": "openrouter/fusion", "stream": stream, "max_tokens": 50}
    return "/chat/completions", {**fusion, "messages": messages}


async def probe(client: httpx.AsyncClient, url: str) -> float:
    started = time.perf_counter()
    response = await client.get(url)
    response.raise_for_status()
    return time.perf_counter() - started


async def measure(url: str, route: str, stream: bool) -> dict[str, Any]:
    health = url.removesuffix("/v1") + "/healthz"
    path, payload = body(route, stream)
    async with httpx.AsyncClient(timeout=300) as client:
        for _ in range(10):  # warm: connections, first-request imports
            await probe(client, health)
        idle = [await probe(client, health) for _ in range(IDLE_PROBES)]
        started = time.perf_counter()
        big = asyncio.ensure_future(client.post(url + path, json=payload))
        busy: list[float] = []
        while not big.done():
            busy.append(await probe(client, health))
            await asyncio.sleep(PROBE_EVERY_S)
        response = await big
        wall = time.perf_counter() - started
    idle_p50 = percentile(idle, 50)
    return {
        "route": route,
        "stream": stream,
        "status": response.status_code,
        "request_s": wall,
        "idle_p50_ms": idle_p50 * 1000,
        "idle_max_ms": max(idle) * 1000,
        "busy_probes": len(busy),
        "busy_p50_ms": percentile(busy, 50) * 1000,
        "busy_p99_ms": percentile(busy, 99) * 1000,
        "busy_max_ms": max(busy, default=0.0) * 1000,
        "max_over_idle_p50": max(busy, default=0.0) / idle_p50,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--route", choices=("chat", "responses"), default="chat")
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args(argv)
    models: ModelSet = realistic("loop", 2, scale=0.05)
    with ServerProcess() as backend, gateway_process(backend.base_url, models, 1) as (url, pid):
        result = asyncio.run(measure(url, args.route, args.stream))
        result["gateway_rss_mb"] = memory(pid)[0] / 2**20
    for name, value in result.items():
        print(f"{name:<20}{value:.2f}" if isinstance(value, float) else f"{name:<20}{value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
