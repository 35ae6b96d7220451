"""Profile the overhead case: where a deliberation's client CPU goes.

    python -m bench.profile                      # ChatFusion, zero latency, pyinstrument
    python -m bench.profile --entry bare_sdk     # the hand-written baseline
    python -m bench.profile --cprofile           # deterministic, with call counts

Zero-latency scripted models in a separate process, as in figure 2. Prints self time by
package and the top functions by self time (time waiting in `epoll` is shown apart as
idle); writes the full report, with pyinstrument's call tree, to
`bench/results/profile-<entry>-<profiler>.txt`. pyinstrument comes with the `bench` extra
(`pip install -e '.[bench]'`); `--cprofile` needs nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.overhead import contenders
from bench.profiles import realistic
from bench.server import ServerProcess

RESULTS = Path(__file__).parent / "results"
_SITE = re.compile(r"site-packages/([A-Za-z0-9_]+)")
_STDLIB = re.compile(r"lib/python3\.\d+/([A-Za-z0-9_]+)")
IDLE = "<idle: epoll>"


def package_of(path: str, function: str = "") -> str:
    """`langchain_core`, `asyncio`, ... for a source file; `langchain_fusion` / `bench` for
    this repository's own; `<idle: epoll>` for the event loop's wait."""
    if "poll" in function and ("epoll" in function or "select" in path or path in ("", "~")):
        return IDLE
    for own in ("langchain_fusion", "bench"):
        if f"/{own}/" in path:
            return own
    match = _SITE.search(path) or _STDLIB.search(path)
    if match:
        return match.group(1)
    return "<builtin>" if path in ("", "~") or path.startswith("<") else path.rsplit("/", 1)[-1]


@dataclass
class Profile:
    """Self time by package and by function, over `n` deliberations."""

    n: int
    cpu: float
    by_package: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    by_function: dict[tuple[str, str, int], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    calls: dict[tuple[str, str, int], int] = field(default_factory=dict)
    inclusive: dict[tuple[str, str, int], float] = field(default_factory=dict)
    """Time in a function and what it called (recursion counted once), where known."""
    tree: str = ""

    def add(self, function: str, path: str, line: int, seconds: float, calls: int = 0) -> None:
        self.by_package[package_of(path, function)] += seconds
        key = (function, path, line)
        self.by_function[key] += seconds
        if calls:
            self.calls[key] = self.calls.get(key, 0) + calls

    def render(self, title: str, top: int) -> str:
        busy = sum(s for p, s in self.by_package.items() if p != IDLE)
        lines = [
            f"{title}: {self.n} deliberations, {self.cpu / self.n * 1000:.1f} ms CPU each "
            "(process_time, profiler overhead included)",
            "",
            "self time by package (share of non-idle samples):",
        ]
        for package, seconds in sorted(self.by_package.items(), key=lambda item: -item[1]):
            share = "" if package == IDLE else f"{seconds / busy * 100:5.1f}%"
            per = seconds / self.n * 1000
            lines.append(f"  {package:<26} {share:>6}  {per:7.2f} ms/deliberation")
        lines += ["", "top functions by self time:"]
        ranked = sorted(self.by_function.items(), key=lambda item: -item[1])
        for (function, path, line), seconds in ranked[:top]:
            if package_of(path, function) == IDLE:
                continue
            calls = self.calls.get((function, path, line))
            count = f"{calls / self.n:8.1f}/delib" if calls else ""
            short = path.split("site-packages/")[-1]
            lines.append(
                f"  {seconds / self.n * 1000:6.2f} ms {count:>14}  {function}  {short}:{line}"
            )
        if self.inclusive:
            lines += ["", f"top functions by inclusive time ({', '.join(LIBRARIES)}):"]
            ranked = sorted(self.inclusive.items(), key=lambda item: -item[1])
            shown = [entry for entry in ranked if package_of(entry[0][1]) in LIBRARIES]
            for (function, path, line), seconds in shown[:top]:
                short = path.split("site-packages/")[-1]
                lines.append(f"  {seconds / self.n * 1000:6.2f} ms  {function}  {short}:{line}")
        return "\n".join(lines)


LIBRARIES = (
    "langchain_fusion",
    "langchain_core",
    "langgraph",
    "langchain_openai",
    "langsmith",
    "openai",
)


async def _run(
    entry: str, n: int, start: Callable[[], None], stop: Callable[[], None], latency: bool
) -> float:
    with ServerProcess() as server:
        setup = contenders(server, 3, realistic("lat3", 3) if latency else None)
        await setup.match_requests(server)
        deliberate: Callable[[], Awaitable[Any]] = setup.entries[entry]
        for _ in range(5):  # warm-up
            await deliberate()
        started = time.process_time()
        start()
        for _ in range(n):
            await deliberate()
        stop()
        cpu = time.process_time() - started
        await setup.bare.aclose()
        return cpu


def with_cprofile(entry: str, n: int, latency: bool = False) -> Profile:
    profiler = cProfile.Profile()
    cpu = asyncio.run(_run(entry, n, profiler.enable, profiler.disable, latency))
    profile = Profile(n, cpu)
    raw: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (path, line, function), (_, calls, self_time, cumulative, _) in raw.items():
        profile.add(function, path, line, self_time, calls)
        profile.inclusive[(function, path, line)] = cumulative
    return profile


def with_pyinstrument(entry: str, n: int, latency: bool = False) -> Profile:
    try:
        from pyinstrument import Profiler
    except ImportError as error:
        raise SystemExit(
            "pyinstrument is missing: pip install -e '.[bench]' (or use --cprofile)"
        ) from error
    # async_mode "disabled": the real stack at every sample, so that the event loop's
    # own work and its idle wait show as they are.
    profiler = Profiler(interval=0.0005, async_mode="disabled")

    def stop() -> None:
        profiler.stop()

    cpu = asyncio.run(_run(entry, n, profiler.start, stop, latency))
    profile = Profile(n, cpu)
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    stack: list[tuple[Any, frozenset[tuple[str, str, int]]]] = (
        [(root, frozenset())] if root is not None else []
    )
    inclusive: dict[tuple[str, str, int], float] = defaultdict(float)
    while stack:
        frame, ancestors = stack.pop()
        key = (frame.function or "?", frame.file_path or "", frame.line_no or 0)
        if key not in ancestors:  # a recursive call's time is already in its caller's
            inclusive[key] += frame.time
        below = ancestors | {key}
        stack.extend((child, below) for child in frame.children if not child.is_synthetic)
        seconds = frame.total_self_time
        if seconds > 0:
            profile.add(*key, seconds)
    profile.inclusive = dict(inclusive)
    profile.tree = profiler.output_text(unicode=True, color=False)
    return profile


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--entry",
        default="chat_fusion",
        choices=["chat_fusion", "graph", "langchain_models", "bare_sdk"],
    )
    parser.add_argument("-n", type=int, default=60, help="deliberations profiled")
    parser.add_argument("--top", type=int, default=30, help="functions listed")
    parser.add_argument("--cprofile", action="store_true", help="cProfile, not pyinstrument")
    parser.add_argument(
        "--latency", action="store_true", help="the critical-path latencies, not zero latency"
    )
    args = parser.parse_args()

    kind = "cprofile" if args.cprofile else "pyinstrument"
    run = with_cprofile if args.cprofile else with_pyinstrument
    profile = run(args.entry, args.n, args.latency)
    label = f"{args.entry}{'-latency' if args.latency else ''}"
    summary = profile.render(f"{label} ({kind})", args.top)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"profile-{label}-{kind}.txt"
    path.write_text(summary + ("\n\n" + profile.tree if profile.tree else "") + "\n")
    print(summary)
    print(f"\nfull report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
