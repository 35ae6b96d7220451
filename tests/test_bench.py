"""The benchmark harness runs end to end in its tiny configuration and writes valid JSON.

No timing is asserted: the figures of a tiny run on a shared machine mean nothing. What is
checked is that every figure ran (or says why it could not) and that the file has the
shape `docs/benchmarks.md` describes.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.common import critical_path, percentile
from bench.profiles import realistic
from bench.server import Timing

ROOT = Path(__file__).resolve().parent.parent
SERVER_FIGURES = ("critical_path", "overhead", "concurrency", "streaming", "straggler", "cache")


def _finite_numbers(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_numbers(v) for v in value)
    return True


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("bench") / "results.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.run", "--tiny", "--quiet", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results: dict[str, Any] = json.loads(output.read_text())
    return results


def test_tiny_run_writes_every_figure(tiny_results: dict[str, Any]) -> None:
    assert tiny_results["schema"] == "langchain-fusion-bench/1"
    assert set(tiny_results["figures"]) == set(SERVER_FIGURES)
    for name, figure in tiny_results["figures"].items():
        assert figure["figure"] == name
        status = figure["status"]
        assert status == "ok" or status.startswith("not available: "), (name, status)
    assert _finite_numbers(tiny_results)


def test_machine_description(tiny_results: dict[str, Any]) -> None:
    machine = tiny_results["machine"]
    assert machine["cpu_count"] >= 1
    assert machine["cpu_model"]
    assert machine["python"].count(".") == 2
    assert machine["packages"]["langchain-fusion"]


def test_figures_have_their_measurements(tiny_results: dict[str, Any]) -> None:
    figures = tiny_results["figures"]
    rows = figures["critical_path"]["rows"]
    assert {(row["panel"], row["path"], row["call"]) for row in rows} == {
        (panel, path, call)
        for panel in (1, 2)
        for path in ("forced", "outer decides")
        for call in ("ainvoke", "invoke")
    }
    assert all(row["stages_ok"] for row in rows)
    overhead = figures["overhead"]
    assert overhead["same_requests"]
    assert set(overhead["contenders"]) == {"bare_sdk", "langchain_models", "graph", "chat_fusion"}
    levels = figures["concurrency"]["rows"]
    assert [row["in_flight"] for row in levels] == [3]
    assert all(row["errors"] == 0 for row in levels)
    assert figures["concurrency"]["clients_constructed_during_batches"] == 0
    assert figures["streaming"]["measured_ms"] is not None
    assert figures["straggler"]["without_policy"]["samples"] == 2
    cache = {row["entry"]: row for row in figures["cache"]["rows"]}
    assert cache["ChatFusion.ainvoke"]["first_run_requests"] > 0


def test_critical_path_groups_stages() -> None:
    models = realistic("x", 2)

    def timing(model: str, start: float, end: float) -> Timing:
        return Timing(model, False, 200, start, start, end, False, 0, None)

    timings = [
        timing("x-outer", 0.0, 1.0),
        timing("x-p0", 1.1, 2.0),
        timing("x-p1", 1.1, 3.0),
        timing("x-judge", 3.2, 4.0),
        timing("x-outer", 4.1, 5.0),
    ]
    path = critical_path(models, timings, started=-0.1, finished=5.2)
    assert [stage.name for stage in path.stages] == [
        "outer_decide",
        "panel",
        "judge",
        "outer_answer",
    ]
    assert path.physical == pytest.approx(1.0 + 1.9 + 0.8 + 0.9)
    assert path.gaps["panel->judge"] == pytest.approx(0.2)
    assert path.ratio == pytest.approx(5.3 / 4.6)


def test_percentile() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 99) == pytest.approx(1.99)
    assert math.isnan(percentile([], 50))
