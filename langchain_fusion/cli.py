"""The `langchain-fusion` command: a deliberation from the shell, or a fusion server.

`langchain-fusion "prompt"` runs a deliberation with live progress on stderr and prints
the answer, the analysis and the usage; `langchain-fusion serve` runs an OpenAI-compatible
server for `openrouter/fusion` and `openrouter/fusion-flash`.

With no `OPENROUTER_API_KEY` (and no `OPENROUTER_BASE_URL`) both run offline on the
embedded SmolLM2 model; otherwise on OpenRouter (or the OpenAI-compatible server the URL
names). Typer parses the command line and Rich renders the output.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from langchain_fusion.backends import OpenAICompatibleBackend
from langchain_fusion.cli_progress import FusionProgress
from langchain_fusion.graph import create_fusion_graph
from langchain_fusion.parameters import FusionParameterError, FusionParameters
from langchain_fusion.result import FusionResult, TokenUsage

DEFAULT_COMMAND = "run"
COMMANDS_HELP = """
**Commands.** The first argument picks one: `serve` starts the OpenAI-compatible fusion
server (`langchain-fusion serve --help`); anything else is a prompt, so
`langchain-fusion "serve me a poem"` deliberates. For a prompt that is exactly `serve`
or `run`, write `langchain-fusion run serve` (or `langchain-fusion -- serve`).
"""
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130


class _PromptByDefault(TyperGroup):
    """A group whose default command is `run`: `langchain-fusion "prompt"` needs no verb.

    Only a first argument that is exactly a command's name selects that command, so a
    prompt that merely starts with one (`"serve me a poem"`) is still a prompt.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Insert `run` unless the first argument names a command."""
        if not args or args[0] not in self.commands:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_PromptByDefault,
    add_completion=False,
    help=__doc__,
    rich_markup_mode="markdown",
)


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _parameters(
    err: Console,
    *,
    models: str | None,
    judge: str | None,
    preset: str | None,
    max_tool_calls: int | None,
    temperature: float | None,
    max_completion_tokens: int | None,
    no_tools: bool,
) -> FusionParameters:
    """The options as `FusionParameters`; bad values end the command with status 2."""
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
        return FusionParameters(**{k: v for k, v in raw.items() if v is not None})
    except FusionParameterError as error:
        _fail(err, str(error))
        raise typer.Exit(EXIT_USAGE) from None


def _fail(err: Console, message: str) -> None:
    """One error on stderr; the message is shown as it is (no Rich markup in it)."""
    err.print(Text.assemble(("error: ", "red"), message), highlight=False, soft_wrap=True)


def _use_local(local: bool) -> bool:
    """The embedded model: asked for, or no endpoint configured."""
    configured = os.environ.get("OPENROUTER_API_KEY") or os.environ.get("OPENROUTER_BASE_URL")
    return local or not configured


def _say_offline(err: Console, local: bool) -> None:
    why = "--local" if local else "no OPENROUTER_API_KEY set"
    err.print(
        f"Running offline on the embedded SmolLM2-135M-Instruct (llama.cpp, in-process): {why}.",
        highlight=False,
        soft_wrap=True,  # one line, even on a narrow or non-terminal stderr
    )


def _start_local(stack: ExitStack, err: Console) -> Any:
    """The embedded model's server, stopped with `stack`; exit 2 when it cannot run here."""
    from langchain_fusion.local import LocalModelServer, LocalModelUnavailable

    try:
        return stack.enter_context(LocalModelServer())
    except LocalModelUnavailable as error:
        _fail(err, str(error))
        raise typer.Exit(EXIT_USAGE) from None


# Options shared by both commands.
ModelsOption = Annotated[
    str | None, typer.Option("--models", help="Panel: comma-separated model slugs (1 to 8).")
]
JudgeOption = Annotated[str | None, typer.Option("--judge", help="The judge's model slug.")]
MaxToolCallsOption = Annotated[
    int | None, typer.Option("--max-tool-calls", help="Tool steps per panelist (1 to 16).")
]
TemperatureOption = Annotated[
    float | None, typer.Option("--temperature", help="Panel temperature (0 to 2).")
]
MaxCompletionTokensOption = Annotated[
    int | None,
    typer.Option("--max-completion-tokens", help="Output tokens per panel and judge call."),
]
NoToolsOption = Annotated[
    bool, typer.Option("--no-tools", help="No web research: parametric knowledge only.")
]
LocalOption = Annotated[
    bool, typer.Option("--local", help="Use the embedded local model even with a key.")
]


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
        _fail(err, "give a prompt as an argument or on stdin")
        raise typer.Exit(EXIT_USAGE)
    parameters = _parameters(
        err,
        models=models,
        judge=judge,
        preset=preset,
        max_tool_calls=max_tool_calls,
        temperature=temperature,
        max_completion_tokens=max_completion_tokens,
        no_tools=no_tools,
    )
    use_local = _use_local(local)
    # Drawn only on a real terminal: escape codes must never reach a pipe or a log file.
    live = progress and sys.stderr.isatty() and err.is_interactive

    with ExitStack() as stack:
        if use_local:
            from langchain_fusion.local import create_local_fusion_graph

            _say_offline(err, local)
            graph = create_local_fusion_graph(_start_local(stack, err), parameters)
        else:
            graph = create_fusion_graph(parameters, backend=OpenAICompatibleBackend())
        try:
            output = _run_graph(graph, prompt, err if live else None)
        except KeyboardInterrupt:
            err.print("cancelled", highlight=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as error:  # the run broke before it had a result to report
            _fail(err, f"{type(error).__name__}: {error}")
            raise typer.Exit(EXIT_FAILED) from None

    result: FusionResult | None = output.get("result")
    if result is None:
        _fail(err, "the run ended without a result")
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


# --- rendering the result -----------------------------------------------------------------


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


# --- serve --------------------------------------------------------------------------------


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: any free port).")
    ] = 8000,
    models: ModelsOption = None,
    judge: JudgeOption = None,
    max_tool_calls: MaxToolCallsOption = None,
    temperature: TemperatureOption = None,
    max_completion_tokens: MaxCompletionTokensOption = None,
    no_tools: NoToolsOption = False,
    local: LocalOption = False,
    server_key: Annotated[
        str | None,
        typer.Option(
            "--server-key",
            envvar="FUSION_SERVER_API_KEY",
            help="Require clients to send this API key (Authorization: Bearer ...).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve `openrouter/fusion` and `openrouter/fusion-flash` as an OpenAI-compatible API.

    `GET /v1/models` and `POST /v1/chat/completions` (streaming included), for any OpenAI
    client: `OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=...)`. `--models` and
    `--judge` set both aliases' panel and judge (explicit values win over
    `openrouter/fusion-flash`'s `general-fast` preset). The backend follows the same rules
    as a deliberation: OpenRouter, `OPENROUTER_BASE_URL`, or the embedded model.
    """
    err = Console(stderr=True)
    try:
        import langchain_fusion.server as fusion_server
    except ImportError as error:  # starlette / uvicorn are an extra
        _fail(err, f"{error}; install the server: pip install 'langchain-fusion[server]'")
        raise typer.Exit(EXIT_USAGE) from None
    parameters = _parameters(
        err,
        models=models,
        judge=judge,
        preset=None,
        max_tool_calls=max_tool_calls,
        temperature=temperature,
        max_completion_tokens=max_completion_tokens,
        no_tools=no_tools,
    )
    settings: dict[str, Any] = {"parameters": parameters}
    with ExitStack() as stack:
        try:
            if _use_local(local):
                _say_offline(err, local)
                local_server = _start_local(stack, err)
                chat_models = fusion_server.local_fusion_models(local_server, **settings)
            else:
                chat_models = fusion_server.fusion_models(**settings)
        except ValueError as error:
            _fail(err, str(error))
            raise typer.Exit(EXIT_USAGE) from None
        if server_key is None and not fusion_server.is_loopback(host):
            err.print(
                f"warning: {host} is reachable from other machines and no --server-key is "
                "set: anyone who can connect spends your upstream credits.",
                highlight=False,
            )
        fusion_server.serve(
            fusion_server.create_app(chat_models, api_key=server_key),
            host=host,
            port=port,
            announce=lambda url: err.print(
                f"Serving {', '.join(chat_models)} on {url} (Ctrl-C stops)",
                highlight=False,
                soft_wrap=True,  # one line, whatever the width: scripts read the URL from it
            ),
        )


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
