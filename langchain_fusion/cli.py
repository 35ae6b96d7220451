"""`langchain-fusion "prompt"`: run a deliberation and print the answer and the analysis.

With no `OPENROUTER_API_KEY` (and no `OPENROUTER_BASE_URL`) it runs offline on the embedded
SmolLM2 model; otherwise on OpenRouter (or the OpenAI-compatible server the URL names).
Typer parses the command line and Rich renders the output.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack, nullcontext
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from langchain_fusion import events
from langchain_fusion.backends import OpenAICompatibleBackend
from langchain_fusion.graph import create_fusion_graph
from langchain_fusion.parameters import FusionParameterError, FusionParameters
from langchain_fusion.result import FusionResult, TokenUsage

app = typer.Typer(add_completion=False, help=__doc__, rich_markup_mode="markdown")


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


@app.command()
def run(
    prompt: Annotated[
        str | None, typer.Argument(help="The prompt. Read from stdin when omitted.")
    ] = None,
    models: Annotated[
        str | None, typer.Option("--models", help="Panel: comma-separated model slugs (1 to 8).")
    ] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="The judge's model slug.")] = None,
    preset: Annotated[
        str | None,
        typer.Option("--preset", help="general-high, general-budget or general-fast."),
    ] = None,
    max_tool_calls: Annotated[
        int | None, typer.Option("--max-tool-calls", help="Tool steps per panelist (1 to 16).")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option("--temperature", help="Panel temperature (0 to 2).")
    ] = None,
    max_completion_tokens: Annotated[
        int | None, typer.Option("--max-completion-tokens", help="Output tokens per call.")
    ] = None,
    no_tools: Annotated[
        bool, typer.Option("--no-tools", help="No web research: parametric knowledge only.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the contract's JSON result plus `answer`.")
    ] = False,
    local: Annotated[
        bool, typer.Option("--local", help="Use the embedded local model even with a key.")
    ] = False,
) -> None:
    """Run a fusion deliberation on PROMPT and print the final answer and the analysis."""
    out = Console()
    err = Console(stderr=True)
    if prompt is None:
        prompt = "" if sys.stdin.isatty() else sys.stdin.read()
    if not prompt.strip():
        err.print("[red]error:[/red] give a prompt as an argument or on stdin")
        raise typer.Exit(2)

    use_local = local or not (
        os.environ.get("OPENROUTER_API_KEY") or os.environ.get("OPENROUTER_BASE_URL")
    )
    raw: dict[str, Any] = {
        "analysis_models": _split(models),
        "model": judge,
        "preset": preset,
        "max_tool_calls": max_tool_calls,
        "temperature": temperature,
        "max_completion_tokens": max_completion_tokens,
        "tools": [] if no_tools else None,
    }
    try:
        parameters = FusionParameters(**{k: v for k, v in raw.items() if v is not None})
    except FusionParameterError as error:
        err.print(f"[red]error:[/red] {error}", markup=False, highlight=False)
        raise typer.Exit(2) from None

    with ExitStack() as stack:
        if use_local:
            why = "--local" if local else "no OPENROUTER_API_KEY set"
            graph = _local_graph(parameters, stack, err, why)
        else:
            graph = create_fusion_graph(parameters, backend=OpenAICompatibleBackend())
        output = _run_with_status(graph, prompt, err)

    result: FusionResult = output["result"]
    answer: str | None = output.get("answer")
    if as_json:
        data = result.model_dump(mode="json")
        data["answer"] = answer
        if output.get("synthesis_error"):
            data["synthesis_error"] = output["synthesis_error"]
        out.print_json(json.dumps(data))
    else:
        _render(out, result, answer, output.get("synthesis_error"))
    if result.status != "ok" or answer is None:
        raise typer.Exit(1)


def _local_graph(parameters: FusionParameters, stack: ExitStack, err: Console, why: str) -> Any:
    from langchain_fusion.local import LocalModelServer, create_local_fusion_graph

    err.print(
        f"Running offline on the embedded SmolLM2-135M-Instruct (llama.cpp, in-process): {why}.",
        highlight=False,
    )
    server = stack.enter_context(LocalModelServer())
    return create_local_fusion_graph(server, parameters)


def _run_with_status(graph: Any, prompt: str, err: Console) -> dict[str, Any]:
    """Run the graph, showing a one-line status on stderr when it is a terminal."""
    final: dict[str, Any] = {}
    done = failed = 0
    status = err.status("Deliberating...", spinner="dots") if err.is_terminal else None
    with status or nullcontext():
        for mode, chunk in graph.stream(
            {"messages": [("user", prompt)]}, stream_mode=["custom", "values"]
        ):
            if mode == "values":
                final = chunk
                continue
            kind = chunk.get("type")
            if kind == events.PANEL_COMPLETED:
                done += 1
            elif kind == events.PANEL_FAILED:
                failed += 1
            elif kind == events.ANALYSIS_IN_PROGRESS and status is not None:
                status.update(f"Judge {chunk['model']} is comparing {done} answers...")
                continue
            elif kind == events.COMPLETED and status is not None:
                status.update("Writing the final answer...")
                continue
            if status is not None and kind in (events.PANEL_COMPLETED, events.PANEL_FAILED):
                status.update(f"Panel: {done} answered, {failed} failed...")
    return final


def _render(
    out: Console, result: FusionResult, answer: str | None, synthesis_error: str | None
) -> None:
    if answer:
        out.rule("Answer")
        out.print(Markdown(answer))
    analysis = result.analysis
    if analysis is not None:
        out.rule("Analysis")
        _bullets(out, "Consensus", analysis.consensus)
        if analysis.contradictions:
            table = Table(title="Contradictions", show_lines=True)
            table.add_column("topic")
            table.add_column("model")
            table.add_column("stance")
            for item in analysis.contradictions:
                for n, stance in enumerate(item.stances):
                    table.add_row(item.topic if n == 0 else "", stance.model, stance.stance)
            out.print(table)
        _bullets(
            out,
            "Partial coverage",
            [f"{p.point} ({', '.join(p.models)})" for p in analysis.partial_coverage],
        )
        _bullets(
            out, "Unique insights", [f"{u.model}: {u.insight}" for u in analysis.unique_insights]
        )
        _bullets(out, "Blind spots", analysis.blind_spots)
    if result.failed_models:
        out.rule("Failed panelists")
        for failure in result.failed_models:
            code = f" [{failure.status_code}]" if failure.status_code else ""
            out.print(f"- {failure.model}{code}: {failure.error}", markup=False, highlight=False)
    if result.failure_reason:
        out.print(
            f"failure_reason: {result.failure_reason}: {result.failure_detail or ''}",
            markup=False,
            highlight=False,
        )
    if synthesis_error:
        out.print(f"synthesis failed: {synthesis_error}", markup=False, highlight=False)
    usage = result.usage
    stages = [("panel", usage.panel), ("judge", usage.judge), ("synthesis", usage.synthesis)]
    out.print(
        "usage: "
        + " | ".join(f"{name} {_usage(u)}" for name, u in stages)
        + f" | total {_usage(usage.total)}",
        highlight=False,
    )


def _bullets(out: Console, title: str, items: list[str]) -> None:
    if not items:
        return
    out.print(f"[bold]{title}[/bold]")
    for item in items:
        out.print(f"  - {item}", markup=False, highlight=False)


def _usage(usage: TokenUsage) -> str:
    cost = f", ${usage.cost:.4f}" if usage.cost is not None else ""
    return f"{usage.input_tokens} in / {usage.output_tokens} out{cost}"


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
