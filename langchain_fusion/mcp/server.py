"""The MCP server: fusion as tools any MCP client can mount (Claude Desktop, Claude Code,
Cursor, LangChain through `langchain-mcp-adapters`), on the official `mcp` SDK's FastMCP.

Tools: `fusion` (deliberate, answer), `fusion_start` / `fusion_result` (the same run in the
background, for clients that cut long calls off). Resource: `fusion://presets`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import CallToolResult, ContentBlock, TextContent, ToolAnnotations
from pydantic import Field

from langchain_fusion.contract.presets import PRESETS
from langchain_fusion.mcp.runner import FusionRunner
from langchain_fusion.mcp.schema import (
    ArgumentError,
    FusionOutput,
    FusionRun,
    parse_arguments,
)
from langchain_fusion.server.errors import GatewayError

SERVER_NAME = "langchain-fusion"
PRESETS_URI = "fusion://presets"
MAX_WAIT_S = 60.0
_CHECKED_BEFORE_THE_SDK = frozenset({"fusion", "fusion_start"})

FUSION_DESCRIPTION = (
    "Ask a panel of models the same question in parallel; an analyst (judge) compares "
    "their answers (consensus, contradictions, unique insights, blind spots) and the final "
    "answer is written from that analysis. Costs several completions: use it for questions "
    "where independent opinions and their disagreements matter. Returns the answer as text "
    "and the deliberation as structured content."
)

Prompt = Annotated[
    str, Field(description="The question or task, self-contained, with any context needed.")
]
Panel = Annotated[
    list[str] | None,
    Field(description="The panel: 1 to 8 model slugs (default: the server's or the preset's)."),
]
Analyst = Annotated[
    str | None, Field(description="The analyst (judge) model slug; it also writes the answer.")
]
PresetName = Annotated[
    str | None,
    Field(description="A preset's name (see the fusion://presets resource), e.g. general-fast."),
]
MaxToolCalls = Annotated[
    int | None, Field(description="Research tool steps per panelist and analyst (1 to 16).")
]
Temperature = Annotated[float | None, Field(description="The panel's temperature (0 to 2).")]


class _FusionMCP(FastMCP[Any]):
    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        # The SDK drops arguments its model does not know; a misspelt one must be refused
        # instead (it would silently fall back to a costlier default).
        if name in _CHECKED_BEFORE_THE_SDK:
            try:
                parse_arguments(arguments)
            except ArgumentError as error:
                raise ToolError(str(error)) from None
        return await super().call_tool(name, arguments)


def create_mcp_server(
    runner: FusionRunner, *, host: str = "127.0.0.1", port: int = 8000
) -> FastMCP[Any]:
    """The MCP server over `runner` (stdio: `.run()`; HTTP: `.streamable_http_app()`)."""

    @asynccontextmanager
    async def lifespan(_: FastMCP[Any]) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await runner.aclose()  # no background run outlives the server

    server = _FusionMCP(SERVER_NAME, host=host, port=port, lifespan=lifespan)

    def arguments_of(**given: Any) -> dict[str, Any]:
        return {name: value for name, value in given.items() if value is not None}

    def refused(error: Exception) -> ToolError:
        return ToolError(runner.describe(error))

    @server.tool(
        name="fusion",
        description=FUSION_DESCRIPTION,
        annotations=ToolAnnotations(title="Fusion deliberation", readOnlyHint=True),
    )
    async def fusion(
        prompt: Prompt,
        ctx: Context[Any, Any, Any],
        analysis_models: Panel = None,
        model: Analyst = None,
        preset: PresetName = None,
        max_tool_calls: MaxToolCalls = None,
        temperature: Temperature = None,
    ) -> Annotated[CallToolResult, FusionOutput]:
        arguments = arguments_of(
            prompt=prompt,
            analysis_models=analysis_models,
            model=model,
            preset=preset,
            max_tool_calls=max_tool_calls,
            temperature=temperature,
        )
        try:
            prepared = runner.prepare(arguments)
        except (ArgumentError, GatewayError) as error:
            raise refused(error) from None

        async def progress(done: int, total: int, message: str) -> None:
            await ctx.report_progress(done, total, message)

        try:
            outcome = await runner.run(prepared, progress)
        except GatewayError as error:
            raise refused(error) from None
        return CallToolResult(
            content=_text(outcome.answer),
            structuredContent=outcome.result.contract_json(),
            isError=outcome.result.status == "error",
        )

    @server.tool(
        name="fusion_start",
        description="Start a fusion deliberation in the background and return its run_id at "
        "once; read it with fusion_result. For clients that time out long tool calls. Same "
        "arguments as fusion.",
        annotations=ToolAnnotations(title="Start a fusion deliberation"),
    )
    async def fusion_start(
        prompt: Prompt,
        analysis_models: Panel = None,
        model: Analyst = None,
        preset: PresetName = None,
        max_tool_calls: MaxToolCalls = None,
        temperature: Temperature = None,
    ) -> Annotated[CallToolResult, FusionRun]:
        arguments = arguments_of(
            prompt=prompt,
            analysis_models=analysis_models,
            model=model,
            preset=preset,
            max_tool_calls=max_tool_calls,
            temperature=temperature,
        )
        try:
            run = runner.start(arguments)
        except (ArgumentError, GatewayError) as error:
            raise refused(error) from None
        text = f"Fusion run {run.run_id} started; read it with fusion_result(run_id)."
        return CallToolResult(content=_text(text), structuredContent=run.contract_json())

    @server.tool(
        name="fusion_result",
        description="The state of a run started with fusion_start: in_progress (with the "
        "panelists done so far), completed (the answer and the deliberation) or failed. "
        f"wait_seconds (up to {MAX_WAIT_S:g}) waits for it to finish first.",
        annotations=ToolAnnotations(title="Read a fusion run", readOnlyHint=True),
    )
    async def fusion_result(
        run_id: Annotated[str, Field(description="The run_id fusion_start returned.")],
        wait_seconds: Annotated[float, Field(ge=0, le=MAX_WAIT_S)] = 0.0,
    ) -> Annotated[CallToolResult, FusionRun]:
        try:
            run = await runner.result(run_id, wait_seconds)
        except ArgumentError as error:
            raise refused(error) from None
        if run.status == "completed" and run.answer is not None:
            text = run.answer
        elif run.status == "failed":
            text = f"Fusion run {run.run_id} failed: {run.error}"
        else:
            done = f"{run.panel_done}/{run.panel_size}"
            text = f"Fusion run {run.run_id} in progress: {done} panelists done."
        failed = run.status == "failed" or (run.result is not None and run.result.status == "error")
        return CallToolResult(
            content=_text(text), structuredContent=run.contract_json(), isError=failed
        )

    @server.resource(
        PRESETS_URI,
        name="presets",
        description="The named panels: each preset's analysis_models and analyst (model).",
        mime_type="application/json",
    )
    def presets() -> str:
        return json.dumps(
            {
                name: {
                    "analysis_models": list(preset.analysis_models),
                    "model": preset.model,
                    "description": preset.description,
                }
                for name, preset in PRESETS.items()
            },
            indent=2,
        )

    return server


def _text(text: str) -> list[ContentBlock]:
    return [TextContent(type="text", text=text)]
