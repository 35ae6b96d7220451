"""How much of each figure to measure: the full run (`make bench`) and a tiny one (tests)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

FIGURES = (
    "critical_path",
    "overhead",
    "concurrency",
    "streaming",
    "straggler",
    "cache",
    "local_model",
)


@dataclass(frozen=True)
class BenchConfig:
    """Sizes and repetitions of every figure."""

    figures: tuple[str, ...] = FIGURES
    scale: float = 1.0
    """Multiplies every scripted latency (0.1 for a quick run)."""
    panels: tuple[int, ...] = (1, 3, 8)
    critical_reps: int = 3
    overhead_panel: int = 3
    overhead_rounds: int = 6
    overhead_per_round: int = 10
    concurrency: tuple[int, ...] = (1, 10, 100, 200)
    concurrency_min_samples: int = 10
    """Levels below this many deliberations are repeated until they have this many."""
    memory: bool = True
    """Also run the small concurrency levels once more under tracemalloc."""
    memory_trace_max: int = 10
    """The largest level traced (tracemalloc makes a level of 200 take minutes)."""
    stream_reps: int = 5
    straggler_samples: int = 20
    straggler_batch: int = 10
    """Deliberations run at once while sampling the straggler figure."""
    straggler_grace: float = 0.2
    local: bool = True
    local_reps: int = 1

    @classmethod
    def tiny(cls) -> BenchConfig:
        """Every code path, a few seconds: for the test suite, not for figures."""
        return cls(
            figures=tuple(f for f in FIGURES if f != "local_model"),
            scale=0.05,
            panels=(1, 2),
            critical_reps=1,
            overhead_panel=2,
            overhead_rounds=1,
            overhead_per_round=2,
            concurrency=(3,),
            concurrency_min_samples=1,
            memory=True,
            stream_reps=1,
            straggler_samples=2,
            straggler_batch=2,
            straggler_grace=0.02,
            local=False,
        )

    def without_local(self) -> BenchConfig:
        figures = tuple(f for f in self.figures if f != "local_model")
        return replace(self, local=False, figures=figures)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)
