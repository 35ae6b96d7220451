"""The report: per-arm accuracy, tokens, cost and latency; paired comparisons against the
best single model; the accuracy/cost Pareto front. As JSON, Markdown, a plot and a table."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from rich.table import Table
from rich.text import Text

from langchain_fusion.eval import stats
from langchain_fusion.eval.arms import ArmSpec
from langchain_fusion.eval.items import EvalItem
from langchain_fusion.eval.store import Record

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
PLOT_FILE = "accuracy_vs_cost.png"


class ArmSummary(BaseModel):
    """One arm over the items it finished."""

    name: str
    kind: str
    models: list[str]
    n: int
    correct: int
    errors: int
    accuracy: float | None
    accuracy_ci: list[float] | None = Field(description="95% percentile bootstrap interval")
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost: float | None
    """USD over the n items; None when some item's cost is unknown."""
    cost_per_item: float | None
    cost_per_correct: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    escalated: int | None = None
    """The cascade arm: items on which the whole panel was asked (None for other arms)."""
    escalation_rate: float | None = None


class Comparison(BaseModel):
    """An arm against the best single model, on the items both finished."""

    arm: str
    baseline: str
    n: int
    won: int
    lost: int
    tied: int
    difference: float | None
    difference_ci: list[float] | None
    mcnemar_p: float


class EvalReport(BaseModel):
    """Everything `results.json` holds."""

    config: dict[str, Any]
    items: int
    complete: bool
    stopped: str | None = None
    arms: list[ArmSummary]
    best_single: str | None
    comparisons: list[Comparison]
    pareto_front: list[str]
    pareto_axis: str
    grading_tokens: int
    grading_cost: float | None

    def arm(self, name: str) -> ArmSummary:
        """The summary of the arm called `name`."""
        return next(arm for arm in self.arms if arm.name == name)

    def write(self, out_dir: str | Path) -> None:
        """`results.json`, `report.md` and `accuracy_vs_cost.png` in `out_dir`."""
        directory = Path(out_dir)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / RESULTS_FILE).write_text(self.model_dump_json(indent=2))
        (directory / REPORT_FILE).write_text(self.markdown())
        plot(self, directory / PLOT_FILE)

    def markdown(self) -> str:
        """The report as Markdown tables."""
        lines = [
            "# Fusion evaluation",
            "",
            f"{self.items} items; grader `{self.config.get('grader')}`; "
            f"{'complete' if self.complete else 'incomplete'}"
            + (f" ({self.stopped})" if self.stopped else "")
            + ".",
            "",
            "| " + " | ".join(_HEADERS) + " |",
            "|" + "---|" * len(_HEADERS),
        ]
        lines += ["| " + " | ".join(_row(arm)) + " |" for arm in self.arms]
        if self.comparisons:
            lines += [
                "",
                f"## Against the best single model ({self.best_single})",
                "",
                "| arm | items | won | lost | tied | difference (95% CI) | McNemar p |",
                "|---|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {c.arm} | {c.n} | {c.won} | {c.lost} | {c.tied} | "
                f"{_points(c.difference, c.difference_ci)} | {c.mcnemar_p:.3g} |"
                for c in self.comparisons
            ]
        lines += [
            "",
            f"Pareto front (accuracy vs {self.pareto_axis}): {', '.join(self.pareto_front)}.",
            "",
            "The best single model is chosen on these same items, which flatters it a "
            "little; an interval that spans 0 is no evidence either way.",
        ]
        return "\n".join(lines) + "\n"

    def rich_table(self) -> Table:
        """The arms table for the terminal."""
        table = Table(title=f"Fusion evaluation: {self.items} items")
        for header in _HEADERS:
            table.add_column(header, justify="left" if header == "arm" else "right")
        for arm in self.arms:
            table.add_row(*(Text(cell) for cell in _row(arm)))
        return table


_HEADERS = (
    "arm",
    "n",
    "correct",
    "accuracy (95% CI)",
    "tokens",
    "cost $",
    "$/correct",
    "p50 s",
    "p95 s",
    "errors",
    "escalated",
)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def _points(value: float | None, interval: Sequence[float] | None) -> str:
    if value is None:
        return "n/a"
    ci = f" [{interval[0]:+.1%}, {interval[1]:+.1%}]" if interval else ""
    return f"{value:+.1%}{ci}"


def _row(arm: ArmSummary) -> list[str]:
    interval = arm.accuracy_ci
    accuracy = _fmt(arm.accuracy, ".1%")
    if interval:
        accuracy += f" [{interval[0]:.1%}, {interval[1]:.1%}]"
    return [
        arm.name,
        str(arm.n),
        str(arm.correct),
        accuracy,
        str(arm.total_tokens),
        _fmt(arm.cost, ".4g"),
        _fmt(arm.cost_per_correct, ".4g"),
        _fmt(arm.latency_p50_s, ".2f"),
        _fmt(arm.latency_p95_s, ".2f"),
        str(arm.errors),
        ""
        if arm.escalation_rate is None
        else f"{arm.escalated}/{arm.n} ({arm.escalation_rate:.0%})",
    ]


def _summary(arm: ArmSpec, records: Sequence[Record], seed: int) -> ArmSummary:
    n = len(records)
    correct = sum(record.correct for record in records)
    costs = [record.cost for record in records]
    cost = None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)
    latencies = [record.latency_s for record in records]
    cascaded = [record.escalated for record in records if record.escalated is not None]
    escalated = sum(cascaded) if arm.kind == "cascade" else None
    interval = stats.bootstrap_interval([float(r.correct) for r in records], seed=seed)
    return ArmSummary(
        name=arm.name,
        kind=arm.kind,
        models=list(arm.models),
        n=n,
        correct=correct,
        errors=sum(1 for record in records if record.error),
        accuracy=correct / n if n else None,
        accuracy_ci=list(interval) if n else None,
        input_tokens=sum(r.input_tokens for r in records),
        output_tokens=sum(r.output_tokens for r in records),
        total_tokens=sum(r.total_tokens for r in records),
        cost=cost,
        cost_per_item=cost / n if cost is not None and n else None,
        cost_per_correct=cost / correct if cost is not None and correct else None,
        latency_p50_s=stats.percentile(latencies, 50),
        latency_p95_s=stats.percentile(latencies, 95),
        escalated=escalated,
        escalation_rate=escalated / len(cascaded) if escalated is not None and cascaded else None,
    )


def build_report(
    arms: Sequence[ArmSpec],
    items: Sequence[EvalItem],
    records: Sequence[Record],
    *,
    config: Mapping[str, Any],
    stopped: str | None,
    seed: int = 0,
) -> EvalReport:
    """Summaries, comparisons and the Pareto front from the finished records."""
    order = {item.id: index for index, item in enumerate(items)}
    by_arm: dict[str, dict[str, Record]] = {arm.name: {} for arm in arms}
    for record in records:
        if record.arm in by_arm and record.item in order:
            by_arm[record.arm][record.item] = record
    summaries = [_summary(arm, list(by_arm[arm.name].values()), seed) for arm in arms]
    singles = [s for s in summaries if s.kind == "single" and s.n]
    best = min(
        singles,
        key=lambda s: (-(s.accuracy or 0.0), s.cost if s.cost is not None else math.inf, s.name),
        default=None,
    )
    comparisons = []
    if best is not None:
        for summary in summaries:
            if summary.kind == "single":
                continue
            shared = sorted(
                set(by_arm[summary.name]) & set(by_arm[best.name]), key=lambda i: order[i]
            )
            if not shared:
                continue
            result = stats.paired(
                [by_arm[summary.name][i].correct for i in shared],
                [by_arm[best.name][i].correct for i in shared],
                seed=seed,
            )
            comparisons.append(
                Comparison.model_validate({"arm": summary.name, "baseline": best.name, **result})
            )
    use_cost = all(s.cost_per_item is not None for s in summaries if s.n)
    points = {
        s.name: (
            (s.cost_per_item or 0.0) if use_cost else s.total_tokens / s.n,
            s.accuracy or 0.0,
        )
        for s in summaries
        if s.n
    }
    grading_costs = [r.grading_cost for r in records]
    return EvalReport(
        config=dict(config),
        items=len(items),
        complete=all(s.n == len(items) for s in summaries),
        stopped=stopped,
        arms=summaries,
        best_single=best.name if best else None,
        comparisons=comparisons,
        pareto_front=stats.pareto_front(points),
        pareto_axis="cost per item (USD)" if use_cost else "tokens per item",
        grading_tokens=sum(r.grading_tokens for r in records),
        grading_cost=None
        if any(c is None for c in grading_costs)
        else sum(c or 0.0 for c in grading_costs),
    )


def plot(report: EvalReport, path: Path) -> None:
    """Each arm as a point (accuracy against cost, or tokens, per item), the Pareto front
    as a line. Matplotlib's Agg backend: no display needed."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot

    cost_axis = report.pareto_axis.startswith("cost")
    points = {
        a.name: ((a.cost_per_item or 0.0) if cost_axis else a.total_tokens / a.n, a.accuracy or 0.0)
        for a in report.arms
        if a.n
    }
    figure, axes = pyplot.subplots(figsize=(8, 5), dpi=100)
    xs = [x for x, _ in points.values()]
    log_x = bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 20
    placed: list[tuple[float, float]] = []
    try:
        rates = {a.name: a.escalation_rate for a in report.arms if a.escalation_rate is not None}
        for name, (x, y) in points.items():
            on_front = name in report.pareto_front
            axes.scatter([x], [y], s=60, zorder=3, marker="o" if on_front else "x")
            label = f"{name} (escalated {rates[name]:.0%})" if name in rates else name
            # Labels of points that (nearly) coincide are stacked, not drawn on each other.
            position = (math.log10(x) if log_x else x, y)
            near = sum(1 for p in placed if _close(p, position, xs, log_x))
            placed.append(position)
            axes.annotate(
                label, (x, y), textcoords="offset points", xytext=(6, 4 - 11 * near), fontsize=8
            )
        front = [points[name] for name in report.pareto_front if name in points]
        if len(front) > 1:
            axes.plot(
                [p[0] for p in front], [p[1] for p in front], "--", zorder=2, label="Pareto front"
            )
            axes.legend(loc="lower right", fontsize=8)
        if log_x:
            axes.set_xscale("log")
        axes.set_xlabel(report.pareto_axis + (" (log scale)" if log_x else ""))
        axes.set_ylabel("accuracy")
        axes.set_ylim(-0.05, 1.05)
        axes.set_title(f"Accuracy vs {report.pareto_axis} ({report.items} items)")
        axes.grid(True, alpha=0.3)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        pyplot.close(figure)


def _close(
    a: tuple[float, float], b: tuple[float, float], xs: Sequence[float], log_x: bool
) -> bool:
    scale = [math.log10(x) for x in xs] if log_x else list(xs)
    span = (max(scale) - min(scale)) or 1.0
    return abs(a[0] - b[0]) < 0.08 * span and abs(a[1] - b[1]) < 0.04


def load_report(out_dir: str | Path) -> EvalReport:
    """A report written earlier (`results.json`)."""
    return EvalReport.model_validate(json.loads((Path(out_dir) / RESULTS_FILE).read_text()))
