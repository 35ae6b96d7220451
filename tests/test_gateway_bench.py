"""`bench/gateway.py` runs end to end in its tiny configuration and writes valid JSON.

No timing is asserted (a tiny run on a shared machine means nothing); what is checked is
that every level ran without an error and that the file has the shape the bench writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gateway_bench_runs_tiny(tmp_path: Path) -> None:
    output = tmp_path / "gateway.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.gateway", "--tiny", "--quiet", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(output.read_text())
    figure = results["figures"]["gateway"]
    assert figure["status"] == "ok"
    assert figure["errors"] == 0
    rows = figure["rows"]
    assert [row["endpoint"] for row in rows] == ["chat.completions", "responses"]
    for row in rows:
        assert row["errors"] == 0, row["first_error"]
        assert row["clients"] == 4
        assert row["backend_requests"] == 4 * 5  # panel of 3, judge, outer answer: each client
        assert row["p99_s"] >= row["p50_s"] > 0
        assert row["gateway_cpu_ms_per_request"] >= 0
