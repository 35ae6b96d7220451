"""`langchain-fusion mcp --local`: the MCP server offline, on the embedded SmolLM2 model, as
an MCP client starts it over stdio (no key, no network). A whole deliberation on the real
model takes a minute or two on 2 cores, so it runs with `make test-all` (marker `full`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from langchain_fusion import FusionAnalysis

pytestmark = [pytest.mark.full, pytest.mark.local_model, pytest.mark.timeout(900)]

COMMAND = str(Path(sys.executable).with_name("langchain-fusion"))


async def test_mcp_local_deliberates_offline_on_the_embedded_model() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENROUTER_")}
    params = StdioServerParameters(command=COMMAND, args=["mcp", "--local"], env=env)
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, _message: str | None) -> None:
        progress.append((done, total))

    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool(
            "fusion", {"prompt": "Name one benefit of exercise."}, progress_callback=on_progress
        )
    assert not result.isError
    assert result.content[0].text.strip()  # type: ignore[union-attr]
    structured = result.structuredContent
    assert structured is not None
    assert structured["status"] == "ok"
    seats = [r["model"] for r in structured["responses"]]
    assert len(seats) >= 2
    assert all(seat.startswith("smollm2") for seat in seats)
    assert set(structured["analysis"]) == set(FusionAnalysis.model_fields)
    assert progress[-1] == (len(seats), len(seats))
