"""`langchain-fusion eval`: is fusion worth it for my task? `register(app)` adds the command
to a Typer app; `command()` is it as a Click command, which the main `langchain-fusion` app
loads only when `eval` is asked for (or its help is shown)."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130

HELP = """
Run each panelist alone, fusion (panel → judge → final answer), the first model fused with
itself, a majority vote and (with --cascade-first K) a cascade on the same items; grade
every answer; report accuracy (95% bootstrap interval), tokens, cost, cost per correct
answer, latency and the cascade's escalation rate per arm, fusion against the best single
model item by item, and a Pareto plot. Every finished (arm, item) is stored in --out as it
completes: run the same command again to resume.
"""


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _fail(err: Console, message: str) -> typer.Exit:
    err.print(Text.assemble(("error: ", "red"), message), highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def _load_items(
    err: Console,
    data: Path | None,
    humaneval: bool,
    langsmith_dataset: str | None,
    *,
    question_key: str,
    answer_key: str,
) -> list[Any]:
    from langchain_fusion.eval.items import (
        DataError,
        load_humaneval,
        load_jsonl,
        load_langsmith,
    )

    sources = [s for s in (data is not None, humaneval, langsmith_dataset is not None) if s]
    if len(sources) != 1:
        raise _fail(err, "give exactly one of --data FILE.jsonl, --humaneval, --langsmith-dataset")
    try:
        if data is not None:
            return load_jsonl(data, question_key=question_key, answer_key=answer_key)
        if humaneval:
            return load_humaneval()
        assert langsmith_dataset is not None
        return load_langsmith(langsmith_dataset)
    except DataError as error:
        raise _fail(err, str(error)) from None


def _prices(err: Console, path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        prices = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise _fail(err, f"--prices {path}: {error}") from None
    if not isinstance(prices, dict):
        raise _fail(err, f"--prices {path}: expected {{model: {{prompt, completion}}}}")
    return prices


def command() -> Any:
    """The `eval` command on its own, for a Click group that loads its commands lazily."""
    single = typer.Typer(add_completion=False, rich_markup_mode="markdown")
    register(single)
    return typer.main.get_command(single)


def register(app: typer.Typer) -> None:
    """Add the `eval` command to `app`."""

    @app.command("eval", help=HELP)
    def eval_command(
        out: Annotated[Path, typer.Option("--out", help="Directory for results (resumable).")],
        data: Annotated[
            Path | None, typer.Option("--data", help="JSONL: {question, answer, ...} a line.")
        ] = None,
        humaneval: Annotated[
            bool, typer.Option("--humaneval", help="HumanEval's 164 problems, run as code.")
        ] = False,
        langsmith_dataset: Annotated[
            str | None, typer.Option("--langsmith-dataset", help="A LangSmith dataset by name.")
        ] = None,
        models: Annotated[
            str | None, typer.Option("--models", help="The panel: comma-separated slugs.")
        ] = None,
        judge: Annotated[str | None, typer.Option("--judge", help="The judge's slug.")] = None,
        arms: Annotated[
            str | None,
            typer.Option(
                "--arms",
                help="Arm kinds: single,fusion,self-fusion,vote,cascade (default all; the "
                "cascade with --cascade-first).",
            ),
        ] = None,
        cascade_first: Annotated[
            int | None,
            typer.Option(
                "--cascade-first",
                min=2,
                help="The cascade arm: the first K seats answer, the rest only on disagreement.",
            ),
        ] = None,
        cascade_rule: Annotated[
            str | None,
            typer.Option(
                "--cascade-rule", help="The cascade's rule: analysis, exact, normalised, numeric."
            ),
        ] = None,
        self_fusion: Annotated[
            str | None, typer.Option("--self-fusion", help="Model fused with itself.")
        ] = None,
        judge_variants: Annotated[
            bool,
            typer.Option("--judge-variants", help="Fusion with a named and an anonymised judge."),
        ] = False,
        grader: Annotated[
            str | None,
            typer.Option(
                "--grader", help="numeric, exact, normalised, choice, regex, code or llm."
            ),
        ] = None,
        grader_model: Annotated[
            str | None, typer.Option("--grader-model", help="The LLM grader's slug.")
        ] = None,
        instructions: Annotated[
            str | None, typer.Option("--instructions", help="A system message for every arm.")
        ] = None,
        question_key: Annotated[
            str, typer.Option("--question-key", help="JSONL field of the question.")
        ] = "question",
        answer_key: Annotated[
            str, typer.Option("--answer-key", help="JSONL field of the reference.")
        ] = "answer",
        concurrency: Annotated[
            int, typer.Option("--concurrency", min=1, help="Items in flight.")
        ] = 4,
        limit: Annotated[
            int | None, typer.Option("--limit", min=1, help="The first N items.")
        ] = None,
        sample: Annotated[
            int | None, typer.Option("--sample", min=1, help="N items at random.")
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="For --sample and judge shuffles.")] = 0,
        max_cost: Annotated[
            float | None, typer.Option("--max-cost", min=0.0, help="USD for this invocation.")
        ] = None,
        prices: Annotated[
            Path | None,
            typer.Option("--prices", help="JSON {model: {prompt, completion}} USD per token."),
        ] = None,
        max_completion_tokens: Annotated[
            int | None, typer.Option("--max-completion-tokens", min=1)
        ] = None,
        max_tool_calls: Annotated[int | None, typer.Option("--max-tool-calls")] = None,
        temperature: Annotated[float | None, typer.Option("--temperature")] = None,
        no_tools: Annotated[bool, typer.Option("--no-tools", help="No research tools.")] = False,
        base_url: Annotated[
            str | None, typer.Option("--base-url", help="Any OpenAI-compatible endpoint.")
        ] = None,
        local: Annotated[bool, typer.Option("--local", help="The embedded SmolLM2.")] = False,
        code_timeout: Annotated[
            float, typer.Option("--code-timeout", min=0.1, help="Seconds per program.")
        ] = 10.0,
        retry_errors: Annotated[
            bool, typer.Option("--retry-errors", help="Run stored failures again.")
        ] = False,
        no_langsmith: Annotated[
            bool, typer.Option("--no-langsmith", help="No LangSmith experiments.")
        ] = False,
        no_progress: Annotated[
            bool, typer.Option("--no-progress", help="No progress bars.")
        ] = False,
    ) -> None:
        from langchain_fusion import FusionParameterError, FusionParameters
        from langchain_fusion.eval.budget import BudgetError
        from langchain_fusion.eval.config import EvalConfig, EvalConfigError
        from langchain_fusion.eval.graders import GraderError, canonical_grader
        from langchain_fusion.eval.items import select_items
        from langchain_fusion.eval.runner import run_eval

        err = Console(stderr=True, emoji=False, markup=False)
        console = Console(emoji=False, markup=False)
        if not console.is_terminal:
            console.width = 160  # a file or a pipe: one line per row
        try:
            if grader is not None:
                canonical_grader(grader)
            settings: dict[str, Any] = {
                "max_completion_tokens": max_completion_tokens,
                "max_tool_calls": max_tool_calls,
                "temperature": temperature,
                "tools": [] if no_tools or local else None,
            }
            parameters = FusionParameters(**{k: v for k, v in settings.items() if v is not None})
        except (GraderError, FusionParameterError) as error:
            raise _fail(err, str(error)) from None
        price_table = _prices(err, prices)
        items = _load_items(
            err,
            data,
            humaneval,
            langsmith_dataset,
            question_key=question_key,
            answer_key=answer_key,
        )
        items = select_items(items, limit=limit, sample=sample, seed=seed)
        with ExitStack() as stack:
            backend, panel, judge_slug, analysis_limits = _backend(
                err,
                stack,
                local=local,
                base_url=base_url,
                models=_split(models),
                judge=judge,
            )
            if local and max_completion_tokens is None:
                parameters = parameters.model_copy(update={"max_completion_tokens": 200})
            config = EvalConfig(
                models=panel,
                judge=judge_slug,
                arms=_split(arms),
                self_fusion=self_fusion,
                judge_variants=judge_variants,
                cascade_first=cascade_first,
                cascade_rule=cascade_rule,
                grader=grader,
                grader_model=grader_model,
                instructions=instructions,
                parameters=parameters,
                backend=backend,
                prices=price_table,
                concurrency=concurrency,
                max_cost=max_cost,
                seed=seed,
                out_dir=out,
                retry_errors=retry_errors,
                code_timeout=code_timeout,
                langsmith=False if no_langsmith else None,
                langsmith_dataset=langsmith_dataset,
                progress=not no_progress and err.is_terminal,
                console=err,
                analysis_limits=analysis_limits,
                setup={
                    "data": str(data) if data else "humaneval" if humaneval else langsmith_dataset,
                    "limit": limit,
                    "sample": sample,
                },
            )
            try:
                report = run_eval(items, config)
            except (EvalConfigError, BudgetError) as error:
                raise _fail(err, str(error)) from None
            except KeyboardInterrupt:
                err.print(f"interrupted; run the same command again to resume from {out}")
                raise typer.Exit(EXIT_INTERRUPTED) from None
        console.print(report.rich_table())
        for comparison in report.comparisons:
            console.print(
                f"{comparison.arm} vs {comparison.baseline}: won {comparison.won}, lost "
                f"{comparison.lost}, tied {comparison.tied}; difference "
                f"{(comparison.difference or 0):+.1%} (95% CI {comparison.difference_ci[0]:+.1%}"
                f" to {comparison.difference_ci[1]:+.1%})"
                if comparison.difference_ci
                else f"{comparison.arm}: no shared items",
                highlight=False,
                soft_wrap=True,
            )
        if report.stopped:
            err.print(f"stopped early: {report.stopped}", highlight=False, soft_wrap=True)
        console.print(
            f"results in {out}/ (results.json, report.md, accuracy_vs_cost.png)", soft_wrap=True
        )


def _backend(
    err: Console,
    stack: ExitStack,
    *,
    local: bool,
    base_url: str | None,
    models: list[str] | None,
    judge: str | None,
) -> tuple[Any, list[str], str | None, Any]:
    """(backend, panel, judge, analysis limits) for the options given."""
    from langchain_fusion import OpenAICompatibleBackend

    if local:
        from langchain_fusion.eval import _pipeline
        from langchain_fusion.local import LocalModelServer, LocalModelUnavailable

        try:
            server = stack.enter_context(LocalModelServer())
        except LocalModelUnavailable as error:
            raise _fail(err, str(error)) from None
        name = server.model_name
        return (
            server.backend(),
            models or [name, name],
            judge or name,
            (_pipeline.local_analysis_limits()),
        )
    if not models:
        raise _fail(err, "--models is required (the panel, e.g. --models a,b), or --local")
    configured = os.environ.get("OPENROUTER_API_KEY") or os.environ.get("OPENROUTER_BASE_URL")
    if base_url is None and not configured:
        raise _fail(err, "set OPENROUTER_API_KEY, or give --base-url, or use --local")
    backend = OpenAICompatibleBackend(base_url=base_url) if base_url else OpenAICompatibleBackend()
    return backend, models, judge, None
