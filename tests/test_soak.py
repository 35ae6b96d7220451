"""Soak: many deliberations at concurrency 50 through FusionTool, with injected faults.

`make test` runs 100 of them; `make test-all` (or FUSION_SOAK_RUNS=300) the long soak.

25% errors on every panelist, 10% on the judge, and some panelists that hang. Nothing may
escape as an exception, no panelist may go unaccounted for, every failed run must say why,
and nothing (task or socket) may be left behind. Figures are printed (`pytest -s`) and
recorded as test properties; no wall-clock assertion.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from pydantic import SecretStr

from langchain_fusion import FusionResult, FusionTool, OpenAICompatibleBackend
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from tests.test_reliability import established_connections

RUNS = int(os.environ.get("FUSION_SOAK_RUNS", "100"))
CONCURRENCY = 50
JUDGE = "soak-judge"


def rss_mb(field: str) -> float:
    """This process's resident memory (VmRSS) or its peak (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def reset_peak_rss() -> None:
    """Start the peak (VmHWM) afresh, so that it measures the soak alone."""
    Path("/proc/self/clear_refs").write_text("5")


@pytest.fixture
def soak_server() -> Any:
    scripts = {
        "soak-a": ModelScript(error_rate=0.25, status_code=429, retry_after=0, seed=1),
        "soak-b": ModelScript(error_rate=0.25, status_code=500, seed=2),
        "soak-c": ModelScript(error_rate=0.25, status_code=502, seed=3),
        "soak-hang": ModelScript(hang=True),
        JUDGE: ModelScript(error_rate=0.10, status_code=500, seed=4),
    }
    with ScriptedOpenAIServer(scripts) as server:
        yield server


async def test_soak_through_fusion_tool(
    soak_server: ScriptedOpenAIServer, record_property: Any
) -> None:
    backend = OpenAICompatibleBackend(
        base_url=soak_server.base_url, api_key=SecretStr("k"), max_retries=0, timeout=3
    )
    limits = {"min_successful": 1, "straggler_grace": 0.3, "deadline": 10.0}
    steady = FusionTool(
        analysis_models=["soak-a", "soak-b", "soak-c"],
        judge_model=JUDGE,
        server_tools=[],
        backend=backend,
        **limits,
    )
    with_a_hang = FusionTool(
        analysis_models=["soak-a", "soak-hang", "soak-c"],
        judge_model=JUDGE,
        server_tools=[],
        backend=backend,
        **limits,
    )
    port = int(soak_server.base_url.rsplit(":", 1)[1].split("/")[0])
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> Any:
        tool = with_a_hang if index % 10 == 0 else steady
        async with gate:
            return await tool.ainvoke(
                {
                    "type": "tool_call",
                    "id": f"c{index}",
                    "name": "fusion",
                    "args": {"prompt": f"question {index}"},
                }
            )

    reset_peak_rss()
    before = rss_mb("VmRSS")
    started = time.monotonic()
    outputs = await asyncio.gather(*(one(i) for i in range(RUNS)), return_exceptions=True)
    wall = time.monotonic() - started
    peak = rss_mb("VmHWM")

    escaped = [o for o in outputs if isinstance(o, BaseException)]
    assert escaped == []
    outcomes: collections.Counter[str] = collections.Counter()
    for output in outputs:
        assert isinstance(output, ToolMessage)
        result = output.artifact
        assert isinstance(result, FusionResult)
        assert len(result.responses) + len(result.failed_models) == 3  # nobody unaccounted
        if result.status != "ok" or result.analysis is None:
            assert result.failure_reason is not None  # every failed run says why
        outcomes[result.failure_reason or "ok"] += 1
        assert result.degraded == bool(result.failed_models)

    await asyncio.sleep(0.3)
    assert len(asyncio.all_tasks()) == 1  # no task left behind
    await backend.aclose()
    await asyncio.sleep(0.2)
    assert established_connections(port) == 0  # no socket left open

    figures = {
        "runs": RUNS,
        "concurrency": CONCURRENCY,
        "outcomes": dict(outcomes),
        "wall_seconds": round(wall, 2),
        "rss_before_mb": before,
        "peak_rss_mb": peak,
        "requests": len(soak_server.requests),
    }
    print("\nsoak:", json.dumps(figures))
    for key, value in figures.items():
        record_property(key, value)
    assert outcomes["ok"] > 0  # the faults degrade runs; they do not sink all of them
