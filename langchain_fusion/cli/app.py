"""The `langchain-fusion` Typer app: its command dispatch and the options commands share."""

from __future__ import annotations

import importlib
import os
from contextlib import ExitStack
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from langchain_fusion.contract.parameters import FusionParameterError, FusionParameters

CLI_HELP = """The `langchain-fusion` command: a deliberation from the shell, or a fusion server.

`langchain-fusion "prompt"` runs a deliberation with live progress on stderr and prints
the answer, the analysis and the usage; `langchain-fusion serve` runs an OpenAI-compatible
server for `openrouter/fusion` and `openrouter/fusion-flash`.

With no `OPENROUTER_API_KEY` (and no `OPENROUTER_BASE_URL`) both run offline on the
embedded SmolLM2 model; otherwise on OpenRouter (or the OpenAI-compatible server the URL
names). Typer parses the command line and Rich renders the output.
"""

DEFAULT_COMMAND = "run"
COMMANDS_HELP = """
**Commands.** The first argument picks one: `serve` starts the OpenAI-compatible fusion
server (`langchain-fusion serve --help`), `mcp` serves fusion to MCP clients such as Claude
Desktop (`langchain-fusion mcp --help`), `eval` measures whether fusion is worth it on
your data (`langchain-fusion eval --help`); anything else is a prompt, so
`langchain-fusion "serve me a poem"` deliberates. For a prompt that is exactly a command's
name, write `langchain-fusion run serve` (or `langchain-fusion -- serve`).
"""
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130


LAZY_COMMANDS = {"eval": "langchain_fusion.eval.cli"}
"""Commands whose module is imported only when the command is asked for (or the help
lists it): the module's `command()` gives the Click command."""


class _PromptByDefault(TyperGroup):
    """A group whose default command is `run`: `langchain-fusion "prompt"` needs no verb.

    Only a first argument that is exactly a command's name selects that command, so a
    prompt that merely starts with one (`"serve me a poem"`) is still a prompt. The
    commands of `LAZY_COMMANDS` load on first use (Click's lazy group: `list_commands`,
    `get_command`), so that a prompt does not import the evaluation harness.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        known = super().list_commands(ctx)
        return [*known, *(name for name in LAZY_COMMANDS if name not in known)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module = importlib.import_module(LAZY_COMMANDS[cmd_name])
            self.add_command(module.command(), cmd_name)
        return super().get_command(ctx, cmd_name)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Insert `run` unless the first argument names a command."""
        if not args or args[0] not in self.list_commands(ctx):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_PromptByDefault,
    add_completion=False,
    help=CLI_HELP,
    rich_markup_mode="markdown",
)


def split_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def parameters_from_options(
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
        "analysis_models": split_list(models),
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
        fail(err, str(error))
        raise typer.Exit(EXIT_USAGE) from None


def fail(err: Console, message: str) -> None:
    """One error on stderr; the message is shown as it is (no Rich markup in it)."""
    err.print(Text.assemble(("error: ", "red"), message), highlight=False, soft_wrap=True)


def use_local(local: bool) -> bool:
    """The embedded model: asked for, or no endpoint configured."""
    configured = os.environ.get("OPENROUTER_API_KEY") or os.environ.get("OPENROUTER_BASE_URL")
    return local or not configured


def say_offline(err: Console, local: bool) -> None:
    why = "--local" if local else "no OPENROUTER_API_KEY set"
    err.print(
        f"Running offline on the embedded SmolLM2-135M-Instruct (llama.cpp, in-process): {why}.",
        highlight=False,
        soft_wrap=True,  # one line, even on a narrow or non-terminal stderr
    )


def start_local(stack: ExitStack, err: Console) -> Any:
    """The embedded model's server, stopped with `stack`; exit 2 when it cannot run here."""
    from langchain_fusion.local import LocalModelServer, LocalModelUnavailable

    try:
        return stack.enter_context(LocalModelServer())
    except LocalModelUnavailable as error:
        fail(err, str(error))
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
