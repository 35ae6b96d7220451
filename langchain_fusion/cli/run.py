"""`langchain-fusion "prompt"`: one deliberation, with live progress on a terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from langchain_fusion.backends import OpenAICompatibleBackend
from langchain_fusion.cli.app import (
    COMMANDS_HELP,
    DEFAULT_COMMAND,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    JudgeOption,
    LocalOption,
    MaxCompletionTokensOption,
    MaxToolCallsOption,
    ModelsOption,
    NoToolsOption,
    TemperatureOption,
    app,
    fail,
    parameters_from_options,
    say_offline,
    start_local,
    use_local,
)
from langchain_fusion.cli.progress import FusionProgress
from langchain_fusion.cli.render import render_result
from langchain_fusion.contract.result import FusionResult
from langchain_fusion.graph import create_fusion_graph


@app.command(DEFAULT_COMMAND, epilog=COMMANDS_HELP)
def run(
    prompt: Annotated[
        str | None, typer.Argument(help="The prompt. Read from stdin when omitted.")
    ] = None,
    models: ModelsOption = None,
    judge: JudgeOption = None,
    preset: Annotated[
        str | None,
        typer.Option("--preset", help="general-high, general-budget or general-fast."),
    ] = None,
    max_tool_calls: MaxToolCallsOption = None,
    temperature: TemperatureOption = None,
    max_completion_tokens: MaxCompletionTokensOption = None,
    no_tools: NoToolsOption = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print only the contract's JSON result plus `answer`."),
    ] = False,
    local: LocalOption = False,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress",
            help="Live progress on stderr (only ever drawn when stderr is a terminal).",
        ),
    ] = True,
) -> None:
    """Run a fusion deliberation on PROMPT and print the answer, the analysis and the usage.

    Live progress (a row per panelist, the judge, the answer as it streams) goes to stderr
    when it is a terminal. Exit status: 0 ok, 1 the run failed, 2 bad input (refused before
    any model is called).
    """
    out = Console()
    err = Console(stderr=True)
    if prompt is None:
        prompt = "" if sys.stdin.isatty() else sys.stdin.read()
    if not prompt.strip():
        fail(err, "give a prompt as an argument or on stdin")
        raise typer.Exit(EXIT_USAGE)
    parameters = parameters_from_options(
        err,
        models=models,
        judge=judge,
        preset=preset,
        max_tool_calls=max_tool_calls,
        temperature=temperature,
        max_completion_tokens=max_completion_tokens,
        no_tools=no_tools,
    )
    local_model = use_local(local)
    # Drawn only on a real terminal: escape codes must never reach a pipe or a log file.
    live = progress and sys.stderr.isatty() and err.is_interactive

    with ExitStack() as stack:
        if local_model:
            from langchain_fusion.local import create_local_fusion_graph

            say_offline(err, local)
            graph = create_local_fusion_graph(start_local(stack, err), parameters)
        else:
            graph = create_fusion_graph(parameters, backend=OpenAICompatibleBackend())
        try:
            output = _run_graph(graph, prompt, err if live else None)
        except KeyboardInterrupt:
            err.print("cancelled", highlight=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as error:  # the run broke before it had a result to report
            fail(err, f"{type(error).__name__}: {error}")
            raise typer.Exit(EXIT_FAILED) from None

    result: FusionResult | None = output.get("result")
    if result is None:
        fail(err, "the run ended without a result")
        raise typer.Exit(EXIT_FAILED)
    answer: str | None = output.get("answer")
    if as_json:
        data = result.model_dump(mode="json")
        data["answer"] = answer
        if output.get("synthesis_error"):
            data["synthesis_error"] = output["synthesis_error"]
        # Plain `print`: Rich would wrap or colour it, and stdout must stay parseable JSON.
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        render_result(out, result, answer, output.get("synthesis_error"))
    if result.status != "ok" or answer is None:
        raise typer.Exit(EXIT_FAILED)


def _run_graph(graph: Any, prompt: str, err: Console | None) -> dict[str, Any]:
    """Run the graph; with a terminal `err`, draw the live progress on it."""
    request = {"messages": [("user", prompt)]}
    if err is None:
        final: dict[str, Any] = {}
        for chunk in graph.stream(request, stream_mode="values"):
            final = chunk
        return final

    metadata: Mapping[str, Any] = (getattr(graph, "config", None) or {}).get("metadata") or {}
    view = FusionProgress(
        panel=[str(label) for label in metadata.get("fusion_panel") or []],
        judge=str(metadata.get("fusion_judge") or ""),
    )
    final = {}
    # Transient: the streaming preview gives way to the rendered answer; the table stays.
    with Live(
        view,
        console=err,
        refresh_per_second=10,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    ):
        try:
            for mode, chunk in graph.stream(request, stream_mode=["custom", "messages", "values"]):
                if mode == "values":
                    final = chunk
                else:
                    view.update(mode, chunk)
        finally:
            view.finish(final)
    err.print(view.table())
    return final
