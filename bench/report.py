"""The terminal tables and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}{unit}" if abs(value) < 10 else f"{value:,.1f}{unit}"
    return f"{value}{unit}"


def _verdict(figure: dict[str, Any]) -> str:
    status = str(figure.get("status", ""))
    if status != "ok":
        return f"[yellow]{status}[/yellow]"
    met = figure.get("met")
    if met is None:
        return "reported"
    return "[green]met[/green]" if met else "[red]not met[/red]"


def headline_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(figure, ours, baseline, ratio, goal, verdict) for each figure that ran."""
    rows: list[tuple[str, str, str, str, str, str]] = []
    figures = results["figures"]
    if cp := figures.get("critical_path"):
        for row in cp["rows"]:
            rows.append(
                (
                    f"1. critical path, panel {row['panel']}, {row['path']}, {row['call']}",
                    _fmt(row["wall_s"], " s"),
                    _fmt(row["physical_s"], " s"),
                    _fmt(row["ratio"]),
                    cp["goal"],
                    _verdict({**cp, "met": (row["ratio"] or 0) <= 1.05}),
                )
            )
    if oh := figures.get("overhead"):
        bare = oh["contenders"]["bare_sdk"]
        for name in ("chat_fusion", "graph", "langchain_models"):
            entry = oh["contenders"][name]
            met = entry["cpu_ratio"] is not None and entry["cpu_ratio"] <= 1.3
            rows.append(
                (
                    f"2. CPU per deliberation, {name} vs bare SDK",
                    _fmt(entry["cpu_ms"], " ms"),
                    _fmt(bare["cpu_ms"], " ms"),
                    _fmt(entry["cpu_ratio"]),
                    oh["goal"],
                    _verdict({**oh, "met": met}),
                )
            )
            rows.append(
                (
                    f"2. wall per deliberation, {name} vs bare SDK",
                    _fmt(entry["wall_ms"], " ms"),
                    _fmt(bare["wall_ms"], " ms"),
                    _fmt(entry["wall_ratio"]),
                    "report",
                    "reported",
                )
            )
    if cc := figures.get("concurrency"):
        for row in cc["rows"]:
            rows.append(
                (
                    f"3. {row['in_flight']} at once: p50 / p99, throughput",
                    f"{_fmt(row['p50_s'])} / {_fmt(row['p99_s'])} s, "
                    f"{_fmt(row['throughput_per_s'])}/s",
                    _fmt(cc["physical_s"], " s"),
                    _fmt(row["p50_over_physical"]),
                    "report",
                    "reported",
                )
            )
        constructed = cc["clients_constructed_during_batches"]
        rows.append(
            (
                "3. clients constructed during the batches",
                str(constructed),
                "0",
                "-",
                cc["goal"],
                _verdict(cc),
            )
        )
    if st := figures.get("streaming"):
        rows.append(
            (
                "4. judge done -> first answer token",
                _fmt(st["measured_ms"], " ms"),
                _fmt(st["floor_ms"], " ms"),
                _fmt(st["ratio"]),
                "report",
                _verdict(st),
            )
        )
    if sg := figures.get("straggler"):
        with_policy = (sg.get("with_policy") or {}).get("p95_s")
        rows.append(
            (
                "5. straggler p95, with policy vs without",
                _fmt(with_policy, " s"),
                _fmt(sg["without_policy"]["p95_s"], " s"),
                _fmt(sg.get("p95_ratio_with_over_without")),
                sg["goal"],
                _verdict(sg),
            )
        )
    if ca := figures.get("cache"):
        for row in ca["rows"]:
            met = row["repeat_requests"] == 0
            rows.append(
                (
                    f"6. cache, {row['entry']}: requests on repeat",
                    str(row["repeat_requests"]),
                    str(row["first_run_requests"]),
                    "-",
                    ca["goal"],
                    _verdict({**ca, "met": met}),
                )
            )
    if lm := figures.get("local_model"):
        rows.append(
            (
                "7. local SmolLM2 deliberation vs one call",
                _fmt(lm.get("deliberation_s"), " s"),
                _fmt(lm.get("single_call_s"), " s"),
                _fmt(lm.get("ratio")),
                "report",
                _verdict(lm),
            )
        )
    return rows


def print_report(results: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    machine = results["machine"]
    table = Table(
        title=f"langchain-fusion benchmarks ({machine['cpu_count']} x {machine['cpu_model']}, "
        f"Python {machine['python']})"
    )
    for column in ("figure", "ours", "baseline", "ratio", "goal", "verdict"):
        table.add_column(column, overflow="fold")
    for row in headline_rows(results):
        table.add_row(*row)
    console.print(table)

    figures = results["figures"]
    if cp := figures.get("critical_path"):
        detail = Table(title="1. critical path: client time outside the stages (median, ms)")
        for column in ("panel", "path", "call", "ratio", "max", "cold", "overhead ms", "gaps ms"):
            detail.add_column(column, overflow="fold")
        for row in cp["rows"]:
            gaps = ", ".join(f"{k} {v}" for k, v in row["gaps_ms"].items())
            detail.add_row(
                str(row["panel"]),
                row["path"],
                row["call"],
                _fmt(row["ratio"]),
                _fmt(row["ratio_max"]),
                _fmt(row["cold_ratio"]),
                _fmt(row["overhead_ms"]),
                gaps,
            )
        console.print(detail)
    if cc := figures.get("concurrency"):
        detail = Table(title="3. concurrency (panel of 3)")
        columns = (
            "in flight",
            "n",
            "delib/s",
            "p50 s",
            "p99 s",
            "CPU ms/delib",
            "server CPU ms",
            "traced KB/in flight",
            "RSS KB/in flight",
            "errors",
            "requests",
            "conns opened",
            "peak open",
        )
        for column in columns:
            detail.add_column(column)
        for row in cc["rows"]:
            detail.add_row(
                str(row["in_flight"]),
                str(row["deliberations"]),
                _fmt(row["throughput_per_s"]),
                _fmt(row["p50_s"]),
                _fmt(row["p99_s"]),
                _fmt(row["cpu_ms_per_deliberation"]),
                _fmt(row["server_cpu_ms_per_deliberation"]),
                _fmt(row.get("traced_peak_kb_per_in_flight")),
                _fmt(row["rss_kb_per_in_flight"]),
                str(row["errors"]),
                str(row["requests"]),
                str(row["connections_opened"]),
                str(row["peak_open_connections"]),
            )
        console.print(detail)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False, allow_nan=False) + "\n")
