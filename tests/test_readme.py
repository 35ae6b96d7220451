"""The README's examples, run as they are printed, against the scripted server.

A block marked `<!-- example: NAME ... -->` in README.md is run here verbatim, with the
environment pointed at the scripted server (`OPENAI_BASE_URL`, `OPENROUTER_BASE_URL`), so
an example that stops working fails the suite.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from langchain_fusion import FusionResult
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example(name: str) -> str:
    """The fenced block right after the `<!-- example: NAME` marker."""
    pattern = rf"<!-- example: {re.escape(name)}\b[^>]*-->\n```(\w+)\n(.*?)\n```"
    match = re.search(pattern, README.read_text(), re.DOTALL)
    assert match, f"README.md has no example named {name!r}"
    return match.group(2)


@pytest.fixture
def on_the_scripted_server(
    scripted_server: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> ScriptedOpenAIServer:
    for prefix in ("OPENAI", "OPENROUTER"):
        monkeypatch.setenv(f"{prefix}_BASE_URL", scripted_server.base_url)
        monkeypatch.setenv(f"{prefix}_API_KEY", "sk-test")
    return scripted_server


def run_example(name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"readme_{name}"}
    exec(compile(readme_example(name), f"README.md:{name}", "exec"), namespace)
    return namespace


def test_the_middleware_example(on_the_scripted_server: ScriptedOpenAIServer) -> None:
    server = on_the_scripted_server
    # The agent's model decides to deliberate on the question, as the example expects.
    server.set_script(
        "gpt-4.1", ModelScript(tool_calls=[{"name": "fusion", "arguments": {"prompt": "shard?"}}])
    )
    namespace = run_example("middleware")
    result = namespace["state"]["fusion"]
    assert isinstance(result, FusionResult)
    assert [r.model for r in result.responses] == ["openai/gpt-4.1", "deepseek/deepseek-v3.2"]
    assert len(server.requests_for("~anthropic/claude-opus-latest")) == 1
    assert (
        namespace["state"]["messages"][-1].content
        == server.requests_for("gpt-4.1")[-1].response_text
    )


def test_the_content_blocks_example(
    on_the_scripted_server: ScriptedOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = run_example("content-blocks")
    call, result = namespace["call"], namespace["result"]
    assert (call["type"], call["name"]) == ("server_tool_call", "fusion")
    assert call["args"] == {"prompt": "Where do experts disagree on dark matter?"}
    assert (result["type"], result["status"]) == ("server_tool_result", "success")
    assert result["output"] == namespace["message"].response_metadata["fusion_result"]
    assert result["output"]["analysis"]["consensus"]
    printed = capsys.readouterr().out.split()
    assert printed == ["text", "server_tool_call", "server_tool_result"]
