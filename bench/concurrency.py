"""Figure 3: many deliberations at once in one process.

Each level runs in a fresh worker process (`python -m bench.concurrency`), so that its
memory figure is its own: the RSS high-water mark over the batch (`VmHWM`, reset just
before it) minus RSS after the warm-up, per deliberation in flight; for small levels also
the tracemalloc peak (tracemalloc slows a level of 200 to minutes).
Reported per level: throughput, p50 and p99 latency, CPU per deliberation, and the
connection pool: HTTP and SDK clients constructed while the batch ran (expected: none)
and TCP connections the server accepted.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import sys
import time
import tracemalloc
from typing import Any

from bench.common import (
    CLIENTS,
    ClientCounter,
    now,
    peak_rss_bytes,
    percentile,
    reset_peak_rss,
    rounded,
    rss_bytes,
)
from bench.config import BenchConfig
from bench.critical_path import measure_once
from bench.profiles import PROMPT, chat_fusion, realistic
from bench.server import ServerProcess
from langchain_fusion import ChatFusion

KB = 1024


async def _timed(llm: ChatFusion) -> float:
    started = now()
    await llm.ainvoke(PROMPT)
    return now() - started


async def _batch(llm: ChatFusion, size: int) -> tuple[list[float], list[str]]:
    """Latencies of the deliberations that succeeded, and the errors of the others."""
    outcomes = await asyncio.gather(*(_timed(llm) for _ in range(size)), return_exceptions=True)
    latencies = [o for o in outcomes if isinstance(o, float)]
    errors = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    return latencies, errors


async def worker(base_url: str, size: int, repeats: int, scale: float, trace: bool) -> None:
    """One level, in this (fresh) process; waits for `go` on stdin after the warm-up."""
    CLIENTS.install()
    llm = chat_fusion(realistic("cc", 3, scale), base_url, forced=True)
    for _ in range(2):
        await llm.ainvoke(PROMPT)
    gc.collect()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    clients_before = CLIENTS.snapshot()
    rss_before = rss_bytes()
    peak_reset = reset_peak_rss()  # else the high-water mark may date from the imports
    cpu_before = time.process_time()
    latencies: list[float] = []
    errors: list[str] = []
    started = now()
    for _ in range(repeats):
        batch, failed = await _batch(llm, size)
        latencies += batch
        errors += failed
    elapsed = now() - started
    cpu = time.process_time() - cpu_before
    peak_rss = peak_rss_bytes()
    report: dict[str, Any] = {
        "latencies": latencies,
        "errors": errors,
        "elapsed": elapsed,
        "cpu": cpu,
        "rss_growth": max(0, peak_rss - rss_before) if peak_reset else None,
        "clients_constructed": ClientCounter.delta(clients_before, CLIENTS.snapshot()),
    }
    print(json.dumps(report), flush=True)
    if trace:  # once the parent has read the server's counts
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        gc.collect()
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        await _batch(llm, size)
        traced = tracemalloc.get_traced_memory()[1] - baseline
        tracemalloc.stop()
        print(json.dumps({"traced_peak": traced}), flush=True)


async def _level(
    server: ServerProcess, config: BenchConfig, size: int, repeats: int
) -> dict[str, Any]:
    trace = config.memory and size <= config.memory_trace_max
    arguments = [server.base_url, str(size), str(repeats), str(config.scale), str(int(trace))]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.concurrency",
        *arguments,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    ready = await process.stdout.readline()
    if ready.strip() != b"ready":
        await process.wait()
        raise RuntimeError(f"the worker for {size} at once did not start: {ready!r}")
    server.reset()  # the counts below are the batches' own, warm-up excluded
    server_cpu = server.stats().cpu_seconds
    process.stdin.write(b"go\n")
    await process.stdin.drain()
    line = await process.stdout.readline()
    stats = server.stats()
    if trace and line:
        process.stdin.write(b"go\n")
        await process.stdin.drain()
        traced = await process.stdout.readline()
    await process.wait()
    if process.returncode != 0 or not line:
        raise RuntimeError(f"the worker for {size} at once failed (exit {process.returncode})")
    report = json.loads(line)
    if trace:
        report.update(json.loads(traced))
    latencies: list[float] = report["latencies"]
    count = size * repeats
    row: dict[str, Any] = {
        "in_flight": size,
        "deliberations": count,
        "errors": len(report["errors"]),
        "first_error": report["errors"][0] if report["errors"] else None,
        "throughput_per_s": rounded(len(latencies) / report["elapsed"], 2),
        "p50_s": rounded(percentile(latencies, 50)),
        "p99_s": rounded(percentile(latencies, 99)),
        "cpu_ms_per_deliberation": rounded(report["cpu"] / count * 1000, 2),
        "server_cpu_ms_per_deliberation": rounded(
            (stats.cpu_seconds - server_cpu) / count * 1000, 2
        ),
        "rss_kb_per_in_flight": (
            rounded(report["rss_growth"] / size / KB, 1)
            if report["rss_growth"] is not None
            else None
        ),
        "traced_peak_kb_per_in_flight": (
            rounded(report["traced_peak"] / size / KB, 1) if "traced_peak" in report else None
        ),
        "requests": stats.requests,
        "connections_opened": stats.connections_opened,
        "peak_open_connections": stats.peak_open_connections,
        "clients_constructed": report["clients_constructed"],
    }
    return row


async def run(server: ServerProcess, config: BenchConfig) -> dict[str, Any]:
    models = realistic("cc", 3, config.scale)
    server.set_scripts(models.scripts())
    llm = chat_fusion(models, server.base_url, forced=True)
    await measure_once(server, llm, models)  # warm-up
    reference = await measure_once(server, llm, models)
    rows = []
    for size in config.concurrency:
        repeats = max(1, math.ceil(config.concurrency_min_samples / size))
        row = await _level(server, config, size, repeats)
        row["p50_over_physical"] = rounded((row["p50_s"] or math.nan) / reference.physical, 3)
        rows.append(row)
    new_clients = sum(sum(row["clients_constructed"].values()) for row in rows)
    errors = sum(row["errors"] for row in rows)
    return {
        "figure": "concurrency",
        "title": "Concurrency: deliberations at once in one process (panel of 3)",
        "goal": "one shared connection pool: no client constructed per call",
        "status": "ok",
        "met": new_clients == 0 and errors == 0,
        "physical_s": rounded(reference.physical),
        "single_wall_s": rounded(reference.wall),
        "clients_constructed_during_batches": new_clients,
        "errors": errors,
        "latency_profile": models.describe(),
        "rows": rows,
    }


if __name__ == "__main__":
    base_url, size, repeats, scale, trace = sys.argv[1:6]
    asyncio.run(worker(base_url, int(size), int(repeats), float(scale), trace == "1"))
