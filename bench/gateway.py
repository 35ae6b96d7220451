"""The gateway under load: many concurrent streaming clients against `langchain-fusion serve`.

Three processes on one machine, as in production on one box: the scripted backend
(`ServerProcess`, with the realistic latency profiles of `bench.profiles`), the gateway
(the installed `langchain-fusion serve` command, so that its CPU and memory are its own,
read from /proc), and this process, the clients (one httpx pool, every request streaming).

Per level: the wall time of each request (sent to its last byte) over the critical path
(the sum of each stage's slowest server time, from one request measured alone), at p50 and
p99; errors (an HTTP error, an error event, or a stream without its end); the gateway's
CPU per request and its peak RSS over the batch (and per request in flight).

    python -m bench.gateway                 # 200 clients, both APIs; table + JSON
    python -m bench.gateway --tiny          # every path in seconds (the test)
    python -m bench.run --only gateway      # the same figure within the bench run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.common import CriticalPath, critical_path, machine, now, percentile, rounded
from bench.config import BenchConfig
from bench.profiles import PROMPT, ModelSet, realistic
from bench.server import ServerProcess

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "gateway.json"
COMMAND = str(Path(sys.executable).with_name("langchain-fusion"))
CLIENTS = 200
PANEL_SIZE = 3
ENDPOINTS = ("chat.completions", "responses")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Level:
    endpoint: str
    clients: int
    workers: int = 1


# --- the gateway process -------------------------------------------------------------------


@contextlib.contextmanager
def gateway_process(backend: str, models: ModelSet, workers: int) -> Iterator[tuple[str, int]]:
    """`langchain-fusion serve` on a free port against `backend`: (base URL, pid)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "FUSION_"))}
    env.update(OPENROUTER_BASE_URL=backend, OPENROUTER_API_KEY="bench")
    process = subprocess.Popen(
        [
            COMMAND,
            "serve",
            "--port",
            "0",
            "--workers",
            str(workers),
            "--models",
            ",".join(models.panel),
            "--judge",
            models.judge,
            "--outer-model",
            models.outer,
            "--no-tools",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/v1", line)
        if not match:
            raise RuntimeError(f"the gateway did not start: {line}{process.stderr.read()}")
        yield match.group(0), process.pid
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (the workers of `--workers N`)."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids += _tree(int(child))
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the gateway's processes."""
    total = 0
    for each in _tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def _status(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak(pid: int) -> bool:
    ok = True
    for each in _tree(pid):
        try:
            Path(f"/proc/{each}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def memory(pid: int) -> tuple[int, int]:
    """(RSS now, RSS high-water mark) over the gateway's processes, in bytes."""
    pids = _tree(pid)
    return sum(_status(p, "VmRSS:") for p in pids), sum(_status(p, "VmHWM:") for p in pids)


# --- the clients ---------------------------------------------------------------------------


def _body(endpoint: str, index: int) -> tuple[str, dict[str, Any]]:
    if endpoint == "responses":
        return "/responses", {
            "model": "openrouter/fusion",
            "input": PROMPT,
            "tool_choice": "required",
            "stream": True,
            "metadata": {"client": str(index)},
        }
    return "/chat/completions", {
        "model": "openrouter/fusion",
        "messages": [{"role": "user", "content": PROMPT}],
        "tool_choice": "required",
        "stream": True,
    }


async def one_client(client: httpx.AsyncClient, url: str, endpoint: str, index: int) -> float:
    """One streamed request, to its last byte; raises on any sign of failure."""
    path, body = _body(endpoint, index)
    done = "data: [DONE]" if endpoint == "chat.completions" else "event: response.completed"
    started = now()
    finished = False
    async with client.stream("POST", url + path, json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
        async for line in response.aiter_lines():
            if line.startswith(('data: {"error"', "event: error", "event: response.failed")):
                raise RuntimeError(f"error event: {line[:200]}")
            if line == done:
                finished = True
    if not finished:
        raise RuntimeError("the stream ended without its last event")
    return now() - started


async def batch(url: str, endpoint: str, clients: int) -> tuple[list[float], list[str], float]:
    """`clients` requests at once: their latencies, their errors, the batch's wall time."""
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(600.0)) as client:
        started = now()
        outcomes = await asyncio.gather(
            *(one_client(client, url, endpoint, i) for i in range(clients)), return_exceptions=True
        )
        elapsed = now() - started
    latencies = [o for o in outcomes if isinstance(o, float)]
    errors = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    return latencies, errors, elapsed


async def alone(server: ServerProcess, models: ModelSet, url: str, endpoint: str) -> CriticalPath:
    """One request with nothing else running: its critical path from the backend's log."""
    server.reset()
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as client:
        started = now()
        await one_client(client, url, endpoint, 0)
        finished = now()
    return critical_path(models, server.timings(), started, finished)


# --- the figure ----------------------------------------------------------------------------


async def measure_workers(
    server: ServerProcess, models: ModelSet, levels: Sequence[Level], warmups: int = 3
) -> list[dict[str, Any]]:
    """Levels of one worker count, each endpoint in turn on one gateway process (a process
    start is seconds of imports; each level still warms up and reads its own figures)."""
    (workers,) = {level.workers for level in levels}
    with gateway_process(server.base_url, models, workers) as (url, pid):
        return [await measure(server, models, level, url, pid, warmups) for level in levels]


async def measure(
    server: ServerProcess, models: ModelSet, level: Level, url: str, pid: int, warmups: int
) -> dict[str, Any]:
    for _ in range(warmups):  # imports, the first graph run, the pools
        await alone(server, models, url, level.endpoint)
    reference = await alone(server, models, url, level.endpoint)
    server.reset()
    rss_before, _ = memory(pid)
    peak_reset = reset_peak(pid)
    cpu_before = cpu_seconds(pid)
    server_cpu = server.stats().cpu_seconds
    latencies, errors, elapsed = await batch(url, level.endpoint, level.clients)
    cpu = cpu_seconds(pid) - cpu_before
    _, peak = memory(pid)
    stats = server.stats()
    physical = reference.physical
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return {
        "endpoint": level.endpoint,
        "clients": level.clients,
        "workers": level.workers,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "physical_s": rounded(physical),
        "alone_wall_s": rounded(reference.wall),
        "alone_ratio": rounded(reference.ratio, 3),
        "p50_s": rounded(p50),
        "p99_s": rounded(p99),
        "p50_over_physical": rounded(p50 / physical, 3),
        "p99_over_physical": rounded(p99 / physical, 3),
        "batch_wall_s": rounded(elapsed),
        "throughput_per_s": rounded(len(latencies) / elapsed, 2),
        "gateway_cpu_ms_per_request": rounded(cpu / level.clients * 1000, 2),
        "gateway_rss_mb_before": rounded(rss_before / 2**20, 1),
        "gateway_peak_rss_mb": rounded(peak / 2**20, 1) if peak_reset else None,
        "gateway_peak_kb_per_request": (
            rounded(max(0, peak - rss_before) / level.clients / 1024, 1) if peak_reset else None
        ),
        "backend_cpu_ms_per_request": rounded(
            (stats.cpu_seconds - server_cpu) / level.clients * 1000, 2
        ),
        "backend_requests": stats.requests,
        "backend_peak_connections": stats.peak_open_connections,
    }


def levels(clients: int, workers: Sequence[int]) -> list[Level]:
    return [Level(endpoint, clients, w) for w in workers for endpoint in ENDPOINTS]


async def run(server: ServerProcess, config: BenchConfig) -> dict[str, Any]:
    """The figure within `python -m bench.run --only gateway` (its tiny mode with --tiny)."""
    tiny = config.scale < 1.0
    return await figure(server, clients=4 if tiny else CLIENTS, scale=config.scale, workers=(1,))


async def figure(
    server: ServerProcess, *, clients: int, scale: float, workers: Sequence[int]
) -> dict[str, Any]:
    models = realistic("gw", PANEL_SIZE, scale)
    server.set_scripts(models.scripts())
    warmups = 1 if clients < 10 else 3
    rows = [
        row
        for count in workers
        for row in await measure_workers(
            server, models, [lv for lv in levels(clients, workers) if lv.workers == count], warmups
        )
    ]
    errors = sum(row["errors"] for row in rows)
    return {
        "figure": "gateway",
        "title": f"Gateway: {clients} concurrent streaming clients (panel of {PANEL_SIZE})",
        "goal": "no error; p50/p99 over the critical path reported",
        "status": "ok",
        "met": errors == 0,
        "errors": errors,
        "latency_profile": models.describe(),
        "rows": rows,
    }


def print_table(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=result["title"])
    columns = (
        "endpoint", "workers", "clients", "errors", "physical s", "p50 s", "p99 s",
        "p50/phys", "p99/phys", "req/s", "CPU ms/req", "peak RSS MB", "KB/req",
    )  # fmt: skip
    for column in columns:
        table.add_column(column)
    for row in result["rows"]:
        table.add_row(
            row["endpoint"],
            str(row["workers"]),
            str(row["clients"]),
            str(row["errors"]),
            str(row["physical_s"]),
            str(row["p50_s"]),
            str(row["p99_s"]),
            str(row["p50_over_physical"]),
            str(row["p99_over_physical"]),
            str(row["throughput_per_s"]),
            str(row["gateway_cpu_ms_per_request"]),
            str(row["gateway_peak_rss_mb"]),
            str(row["gateway_peak_kb_per_request"]),
        )
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="4 clients, fast models (tests)")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--workers", default="1", help="comma-separated, e.g. 1,2")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every latency")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    clients, scale = (4, 0.05) if args.tiny else (args.clients, args.scale)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    started = time.monotonic()
    with ServerProcess() as server:
        result = asyncio.run(figure(server, clients=clients, scale=scale, workers=workers))
    results = {
        "schema": "langchain-fusion-bench/1",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.gateway", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "seconds": {"total": round(time.monotonic() - started, 1)},
        "figures": {"gateway": result},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    if not args.quiet:
        print_table(result)
        print(f"results: {args.output}", file=sys.stderr)
    return 0 if result["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
