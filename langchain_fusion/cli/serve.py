"""`langchain-fusion serve`: the OpenAI-compatible fusion server."""

from __future__ import annotations

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
    start_local,
    use_local,
)


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
    settings: dict[str, Any] = {"parameters": parameters}
    with ExitStack() as stack:
        try:
            if use_local(local):
                say_offline(err, local)
                local_server = start_local(stack, err)
                chat_models = fusion_server.local_fusion_models(local_server, **settings)
            else:
                chat_models = fusion_server.fusion_models(**settings)
        except ValueError as error:
            fail(err, str(error))
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
