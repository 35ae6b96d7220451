"""Run the benchmarks: `python -m bench.run` (or `make bench`).

Prints a table and writes `bench/results/latest.json`. `--tiny` runs every code path in
a few seconds (the test suite uses it; its figures mean nothing), `--no-local` leaves out
the embedded-model figure, `--only critical_path,overhead` picks figures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import (
    cache,
    concurrency,
    critical_path,
    gateway,
    local_model,
    overhead,
    straggler,
    streaming,
)
from bench.common import CLIENTS, machine
from bench.config import FIGURES, BenchConfig
from bench.report import print_report, write_json
from bench.server import ServerProcess

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "latest.json"
SERVER_FIGURES = {
    "critical_path": critical_path.run,
    "overhead": overhead.run,
    "concurrency": concurrency.run,
    "streaming": streaming.run,
    "straggler": straggler.run,
    "cache": cache.run,
}
EXTRA_FIGURES = {"gateway": gateway.run}
"""Run only when named (`--only gateway`): the gateway's load test takes minutes."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="every path, tiny sizes (tests)")
    parser.add_argument("--no-local", action="store_true", help="skip the SmolLM2 figure")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated figures among: {', '.join([*FIGURES, *EXTRA_FIGURES])}",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON file")
    parser.add_argument("--quiet", action="store_true", help="no table, only the JSON file")
    return parser.parse_args(argv)


def configure(args: argparse.Namespace) -> BenchConfig:
    config = BenchConfig.tiny() if args.tiny else BenchConfig()
    if args.only:
        chosen = tuple(name.strip() for name in args.only.split(",") if name.strip())
        unknown = sorted(set(chosen) - set(FIGURES) - set(EXTRA_FIGURES))
        if unknown:
            raise SystemExit(f"unknown figures: {', '.join(unknown)}")
        config = replace(config, figures=chosen, local="local_model" in chosen)
    if args.no_local:
        config = config.without_local()
    return config


def _failure(name: str, error: BaseException) -> dict[str, Any]:
    return {
        "figure": name,
        "status": f"failed: {type(error).__name__}: {error}",
        "met": None,
        "traceback": traceback.format_exc(),
    }


async def run_all(config: BenchConfig, progress: Any = None) -> dict[str, Any]:
    """Every chosen figure; a figure that fails is reported, the others still run."""
    CLIENTS.install()
    figures: dict[str, Any] = {}
    timings: dict[str, float] = {}
    started = time.monotonic()
    runners = {**SERVER_FIGURES, **EXTRA_FIGURES}
    wanted = [name for name in config.figures if name in runners]
    if wanted:
        with ServerProcess() as server:
            for name in wanted:
                if progress:
                    progress(name)
                began = time.monotonic()
                try:
                    figures[name] = await runners[name](server, config)
                except Exception as error:
                    figures[name] = _failure(name, error)
                timings[name] = round(time.monotonic() - began, 1)
    if config.local and "local_model" in config.figures:
        if progress:
            progress("local_model")
        began = time.monotonic()
        try:
            figures["local_model"] = await local_model.run(config)
        except Exception as error:
            figures["local_model"] = _failure("local_model", error)
        timings["local_model"] = round(time.monotonic() - began, 1)
    return {
        "schema": "langchain-fusion-bench/1",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
        "machine": machine(),
        "config": config.as_json(),
        "seconds": {**timings, "total": round(time.monotonic() - started, 1)},
        "figures": figures,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = configure(args)

    def progress(name: str) -> None:
        if not args.quiet:
            print(f"... {name}", file=sys.stderr, flush=True)

    results = asyncio.run(run_all(config, progress))
    write_json(results, args.output)
    if not args.quiet:
        print_report(results)
        if "gateway" in results["figures"] and results["figures"]["gateway"].get("rows"):
            gateway.print_table(results["figures"]["gateway"])
        print(f"results: {args.output}", file=sys.stderr)
    failed = [n for n, f in results["figures"].items() if str(f["status"]).startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
