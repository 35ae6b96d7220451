"""`langchain-fusion mcp`: fusion as an MCP server, over stdio or streamable HTTP."""

from __future__ import annotations

import contextlib
from contextlib import ExitStack
from typing import Annotated, Any

import typer
from rich.console import Console

from langchain_fusion.cli.app import (
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
    split_list,
    start_local,
    use_local,
)

_POLICY = "Policy (checked before any upstream call)"


@app.command("mcp")
def mcp(
    http: Annotated[
        bool, typer.Option("--http", help="Serve streamable HTTP at /mcp instead of stdio.")
    ] = False,
    host: Annotated[str, typer.Option("--host", help="HTTP: address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="HTTP: port (0: any free port).")
    ] = 8000,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="Any OpenAI-compatible server (default OPENROUTER_BASE_URL, else OpenRouter); "
            "the key is OPENROUTER_API_KEY.",
        ),
    ] = None,
    models: ModelsOption = None,
    judge: JudgeOption = None,
    max_tool_calls: MaxToolCallsOption = None,
    temperature: TemperatureOption = None,
    max_completion_tokens: MaxCompletionTokensOption = None,
    no_tools: NoToolsOption = False,
    local: LocalOption = False,
    allow_models: Annotated[
        str | None,
        typer.Option(
            "--allow-models",
            help="Comma-separated globs of the models a call may use (e.g. 'openai/*').",
            rich_help_panel=_POLICY,
        ),
    ] = None,
    max_panel: Annotated[
        int | None,
        typer.Option(
            "--max-panel", min=1, help="Largest panel a call may ask for.", rich_help_panel=_POLICY
        ),
    ] = None,
    max_request_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-request-tokens",
            min=1,
            help="Worst-case tokens one call may spend (refused before it runs).",
            rich_help_panel=_POLICY,
        ),
    ] = None,
) -> None:
    """Serve fusion to MCP clients (Claude Desktop, Claude Code, Cursor, LangChain).

    Tools `fusion` (the answer as text, the deliberation as structured content, progress as
    panelists finish), `fusion_start` / `fusion_result` (the same in the background) and the
    resource `fusion://presets`. stdio by default (the client starts this command); `--http`
    serves streamable HTTP on `--host`/`--port` at `/mcp`. `--models`, `--judge` and the
    other fusion options are the defaults a call may override.
    """
    err = Console(stderr=True)
    try:
        from langchain_fusion import mcp as fusion_mcp
        from langchain_fusion.server.policy import Policy
    except ImportError as error:  # the mcp SDK is an extra
        fail(err, f"{error}; install it: pip install 'langchain-fusion[mcp]'")
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
    settings: dict[str, Any] = {}
    if parameters.model_fields_set:
        settings["parameters"] = parameters
    if base_url:
        settings["base_url"] = base_url
    offline = use_local(local) and not base_url
    with ExitStack() as stack:
        local_server: Any = None
        if offline:
            say_offline(err, local)
            local_server = start_local(stack, err)
        try:
            policy = Policy(
                allow_models=tuple(split_list(allow_models) or ()),
                max_panel=max_panel,
                max_request_tokens=max_request_tokens,
            )
            runner = fusion_mcp.build_runner(local=local_server, policy=policy, **settings)
        except (ValueError, TypeError) as error:
            fail(err, str(error))
            raise typer.Exit(EXIT_USAGE) from None
        server = fusion_mcp.create_mcp_server(runner, host=host, port=port)
        if not http:
            # stdout carries the protocol: every word for people goes to stderr.
            err.print("MCP server on stdio (the client speaks first)", highlight=False)
            server.run("stdio")
            return
        _serve_http(server, host=host, port=port, err=err)


def _serve_http(server: Any, *, host: str, port: int, err: Console) -> None:
    import uvicorn

    from langchain_fusion.background import bind_socket, http_url

    sock = bind_socket(host, port)
    try:
        url = http_url(host, int(sock.getsockname()[1]), "/mcp")
        # One line, whatever the width: scripts read the URL from it.
        err.print(f"MCP server on {url} (streamable HTTP; Ctrl-C stops)", soft_wrap=True)
        config = uvicorn.Config(server.streamable_http_app(), lifespan="on", ws="none")
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
