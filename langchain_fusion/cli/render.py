"""The result in a terminal: the answer as markdown, the analysis as tables, the usage."""

from __future__ import annotations

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from langchain_fusion.contract.result import FusionResult, TokenUsage


def render_result(
    out: Console, result: FusionResult, answer: str | None, synthesis_error: str | None
) -> None:
    """The answer as markdown, the analysis as tables, failures, and usage per stage."""
    if answer:
        out.rule("Answer")
        out.print(Markdown(answer))
    analysis = result.analysis
    if analysis is not None:
        out.rule("Analysis")
        _list_table(out, "Consensus", "point", analysis.consensus)
        table = _table("Contradictions", "topic", "model", "stance")
        for item in analysis.contradictions:
            for n, stance in enumerate(item.stances):
                table.add_row(item.topic if n == 0 else "", stance.model, stance.stance)
            if not item.stances:
                table.add_row(item.topic, "", "")
        _print_table(out, table, bool(analysis.contradictions))
        table = _table("Partial coverage", "point", "covered by")
        for partial in analysis.partial_coverage:
            table.add_row(partial.point, ", ".join(partial.models))
        _print_table(out, table, bool(analysis.partial_coverage))
        table = _table("Unique insights", "model", "insight")
        for unique in analysis.unique_insights:
            table.add_row(unique.model, unique.insight)
        _print_table(out, table, bool(analysis.unique_insights))
        _list_table(out, "Blind spots", "topic", analysis.blind_spots)
    if result.failed_models:
        table = _table("Failed panelists", "model", "status", "error")
        for failure in result.failed_models:
            status = str(failure.status_code) if failure.status_code else ""
            table.add_row(failure.model, status, failure.error)
        out.print(table)
    if result.sources:
        table = _table("Sources", "title", "url")
        for source in result.sources:
            table.add_row(source.title or "", source.url)
        out.print(table)
    if result.failure_reason:
        out.print(
            f"failure_reason: {result.failure_reason}: {result.failure_detail or ''}",
            markup=False,
            highlight=False,
        )
    if synthesis_error:
        out.print(f"synthesis failed: {synthesis_error}", markup=False, highlight=False)
    out.print(usage_table(result))


def usage_table(result: FusionResult) -> Table:
    """Tokens and cost per stage (panel, judge, synthesis) and in total."""
    usage = result.usage
    table = Table(title="Usage", title_justify="left", show_footer=False)
    table.add_column("stage")
    for column in ("input", "output", "total"):
        table.add_column(column, justify="right")
    table.add_column("cost", justify="right")
    stages = [("panel", usage.panel), ("judge", usage.judge), ("synthesis", usage.synthesis)]
    for name, stage in stages:
        table.add_row(name, *_usage_cells(stage))
    table.add_section()
    table.add_row("total", *_usage_cells(usage.total), style="bold")
    return table


def _usage_cells(usage: TokenUsage) -> tuple[str, str, str, str]:
    cost = f"${usage.cost:.4f}" if usage.cost is not None else "n/a"
    return (
        f"{usage.input_tokens:,}",
        f"{usage.output_tokens:,}",
        f"{usage.total_tokens:,}",
        cost,
    )


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=True, expand=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _list_table(out: Console, title: str, column: str, items: list[str]) -> None:
    table = _table(title, column)
    for item in items:
        table.add_row(item)
    _print_table(out, table, bool(items))


def _print_table(out: Console, table: Table, filled: bool) -> None:
    # An empty section says so in one line rather than drawing an empty frame.
    if filled:
        out.print(table)
    else:
        out.print(f"[bold]{table.title}[/bold]: [dim]none[/dim]")
