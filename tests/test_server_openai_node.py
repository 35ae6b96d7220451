"""The `openai` npm SDK (pinned, installed from the npm registry into a cache; skipped
without node) against the gateway: Chat Completions and Responses, created and streamed
without `stream_options`, with the usage and the concrete model arriving."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_server_openrouter_sdk import node_package
from test_server_support import CONCRETE, OUTER, PANEL, Gateway, running_gateway

OPENAI_NPM = "openai@7.55.0"
SCRIPT = Path(__file__).parent / "node" / "openai_sdk_client.mjs"


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    for gateway in running_gateway():
        gateway.reset()
        yield gateway


def test_the_openai_npm_sdk_gets_usage_and_the_concrete_model(gateway: Gateway) -> None:
    where = node_package(OPENAI_NPM, "openai")
    (where / "client.mjs").write_text(SCRIPT.read_text())  # beside its node_modules
    done = subprocess.run(
        ["node", "client.mjs", gateway.url, OUTER, json.dumps(PANEL)],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["chat"]["model"] == CONCRETE
    assert out["chat"]["text"]
    assert out["chat"]["usage"]["total_tokens"] > 0
    assert {chunk["model"] for chunk in out["chunks"]} == {CONCRETE}
    assert out["chunks"][-1]["usage"]["total_tokens"] > 0  # unasked, as hosted
    assert out["response"]["model"] == CONCRETE
    assert out["response"]["text"]
    assert out["response"]["usage"]["total_tokens"] > 0
    snapshots = [e for e in out["events"] if e["model"] is not None]
    assert snapshots[0]["type"] == "response.created"
    assert {e["model"] for e in snapshots} == {CONCRETE}
    assert out["events"][-1]["type"] == "response.completed"
    assert out["events"][-1]["usage"]["total_tokens"] > 0
