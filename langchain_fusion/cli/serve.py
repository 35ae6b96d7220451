"""`langchain-fusion serve`: the OpenAI- and OpenRouter-compatible fusion server."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from langchain_fusion.cli.app import (
    EXIT_USAGE,
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
    split_list,
    start_local,
    use_local,
)

_PANEL = "Policy (checked before any upstream call)"
_KEYS = "Keys and spend"


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: any free port).")
    ] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, help="Worker processes on this machine (they share the port)."
        ),
    ] = 1,
    models: ModelsOption = None,
    judge: Annotated[
        str | None,
        typer.Option("--judge", "--analyst", help="The analyst's (judge's) model slug."),
    ] = None,
    outer_model: Annotated[
        str | None,
        typer.Option("--outer-model", help="The aliases' outer model (default: the judge)."),
    ] = None,
    max_tool_calls: MaxToolCallsOption = None,
    temperature: TemperatureOption = None,
    max_completion_tokens: MaxCompletionTokensOption = None,
    no_tools: NoToolsOption = False,
    local: LocalOption = False,
    server_key: Annotated[
        list[str] | None,
        typer.Option(
            "--server-key",
            envvar="FUSION_SERVER_API_KEY",
            help="Require clients to send this key (Authorization: Bearer ...); repeatable. "
            "More keys: FUSION_SERVER_API_KEYS=name:key,... or --keys-file.",
            show_default=False,
            rich_help_panel=_KEYS,
        ),
    ] = None,
    keys_file: Annotated[
        Path | None,
        typer.Option(
            "--keys-file",
            envvar="FUSION_SERVER_KEYS_FILE",
            help='JSON: {"keys": [{"name", "key" or "sha256", "max_tokens"?, "max_usd"?}]}.',
            rich_help_panel=_KEYS,
        ),
    ] = None,
    ledger: Annotated[
        str | None,
        typer.Option(
            "--ledger",
            envvar="FUSION_SERVER_LEDGER",
            metavar="PATH|URL",
            help="Where the keys' spend is kept: a SQLite file for the workers of one machine "
            "(default, when a key has a cap: ./langchain-fusion-spend.sqlite3), or "
            "postgresql://user@host/db, one database for every machine (caps then hold "
            "across them; pip install 'langchain-fusion[postgres]').",
            rich_help_panel=_KEYS,
        ),
    ] = None,
    byok: Annotated[
        bool,
        typer.Option(
            "--byok",
            help="Pay upstream with the caller's own key (in Authorization, or in "
            "X-Upstream-Api-Key when server keys are set) instead of the server's.",
            rich_help_panel=_KEYS,
        ),
    ] = False,
    allow_models: Annotated[
        str | None,
        typer.Option(
            "--allow-models",
            envvar="FUSION_SERVER_ALLOW_MODELS",
            help="Comma-separated globs every model must match (outer, panel, judge, "
            "presets), e.g. `openai/*,~anthropic/*`.",
            rich_help_panel=_PANEL,
        ),
    ] = None,
    max_panel: Annotated[
        int | None,
        typer.Option(
            "--max-panel",
            min=1,
            help="Largest panel a request may ask for.",
            rich_help_panel=_PANEL,
        ),
    ] = None,
    max_request_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-request-tokens",
            min=1,
            help="Refuse (402) a request whose worst case could spend more tokens.",
            rich_help_panel=_PANEL,
        ),
    ] = None,
    max_request_cost: Annotated[
        float | None,
        typer.Option(
            "--max-request-cost",
            min=0.0,
            help="Refuse (402) a request whose worst case could cost more USD (needs --prices).",
            rich_help_panel=_PANEL,
        ),
    ] = None,
    prices: Annotated[
        Path | None,
        typer.Option(
            "--prices",
            help='JSON: {"model": {"prompt": USD per token, "completion": USD per token}}.',
            rich_help_panel=_PANEL,
        ),
    ] = None,
    no_extensions: Annotated[
        bool,
        typer.Option(
            "--no-extensions",
            help="Refuse (400) our extensions of the hosted contract, such as "
            "parameters.cascade: only what the hosted service accepts.",
            rich_help_panel=_PANEL,
        ),
    ] = False,
    no_playground: Annotated[
        bool,
        typer.Option(
            "--no-playground",
            help="Serve the API only: no browser playground at / (docs/server.md).",
        ),
    ] = False,
) -> None:
    """Serve fusion as an OpenAI- and OpenRouter-compatible API (docs/server.md).

    `POST /v1/chat/completions` and `POST /v1/responses`, streamed or not, for any OpenAI or
    OpenRouter client: `OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=...)`. The
    aliases `openrouter/fusion` and `openrouter/fusion-flash`, any model with the
    `openrouter:fusion` tool or the `fusion` plugin (per-request panel and judge), and plain
    completions of any model. `--models`, `--judge` and the other fusion options are the
    server's defaults. The backend follows the same rules as a deliberation: OpenRouter,
    `OPENROUTER_BASE_URL`, or the embedded model.
    """
    err = Console(stderr=True)
    try:
        from langchain_fusion import server as fusion_server
        from langchain_fusion.server import keys as server_keys
        from langchain_fusion.server import ledger as fusion_ledger
    except ImportError as error:  # starlette / uvicorn are an extra
        fail(err, f"{error}; install the server: pip install 'langchain-fusion[server]'")
        raise typer.Exit(EXIT_USAGE) from None
    parameters = parameters_from_options(
        err,
        models=models,
        judge=judge,
        preset=None,
        max_tool_calls=max_tool_calls,
        temperature=temperature,
        max_completion_tokens=max_completion_tokens,
        no_tools=no_tools,
    )
    offline = use_local(local)
    if offline and workers > 1:
        fail(err, "--workers needs a remote backend: the embedded model runs in one process")
        raise typer.Exit(EXIT_USAGE)
    try:
        keys = [
            *(server_keys.key_from_secret(f"key-{i}", k) for i, k in enumerate(server_key or [])),
            *server_keys.keys_from_environment(),
            *(server_keys.load_keys_file(keys_file) if keys_file else []),
        ]
        config = fusion_server.ServerConfig(
            parameters=parameters.model_dump(exclude_unset=True, mode="json"),
            outer_model=outer_model,
            keys=keys,
            byok=byok,
            ledger=ledger or None,
            allow_models=split_list(allow_models) or [],
            max_panel=max_panel,
            max_request_tokens=max_request_tokens,
            max_request_cost=max_request_cost,
            prices=fusion_server.load_prices(prices) if prices else {},
            extensions=not no_extensions,
            playground=not no_playground,
        )
    except ValueError as error:
        fail(err, str(error))
        raise typer.Exit(EXIT_USAGE) from None
    with ExitStack() as stack:
        local_server: Any = None
        if offline:
            say_offline(err, local)
            local_server = start_local(stack, err)
        try:
            app = config.build(local=local_server)  # also checks the configuration
        except (ValueError, TypeError, fusion_ledger.LedgerError) as error:
            fail(err, str(error))
            raise typer.Exit(EXIT_USAGE) from None
        if not keys and not byok and not fusion_server.is_loopback(host):
            err.print(
                f"warning: {host} is reachable from other machines and no server key is set: "
                "anyone who can connect spends your upstream credits.",
                highlight=False,
            )

        def announce(url: str) -> None:
            served = ", ".join(fusion_server.FUSION_MODELS)
            # One line, whatever the width: scripts read the URL from it.
            err.print(f"Serving {served} on {url} (Ctrl-C stops)", highlight=False, soft_wrap=True)
            details = [f"{workers} workers"] if workers > 1 else []
            if keys:
                details.append(f"{len(keys)} server key(s)")
            if (target := config.ledger_target()) is not None:  # a password masked
                details.append(f"spend ledger {fusion_ledger.describe_ledger(target)}")
            if byok:
                details.append("callers pay with their own upstream key")
            if details:
                err.print("; ".join(details), highlight=False, soft_wrap=True)
            if not no_playground:  # after the lines scripts read
                page = f"{url.removesuffix('/v1')}/"
                err.print(f"Playground: {page}", highlight=False, soft_wrap=True)

        if workers > 1:
            config.export()  # each worker builds the app from it
            fusion_server.serve_workers(workers, host=host, port=port, announce=announce)
        else:
            fusion_server.serve(app, host=host, port=port, announce=announce)
