"""LangChain's standard tool tests for `FusionTool`.

The integration suite invokes the tool for real: its panel and judge are scripted models on
one `ScriptedOpenAIServer` for the module, reached over loopback HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests
from pydantic import SecretStr

from langchain_fusion import FusionResult, FusionTool, OpenAICompatibleBackend
from langchain_fusion.testing import ScriptedOpenAIServer

PANEL = ["panel-a", "panel-b"]
JUDGE = "judge-j"
PROMPT = "Should a small team adopt microservices?"
# Nothing listens here: the unit suite builds the tool but never runs it.
UNREACHABLE = "http://127.0.0.1:9/v1"

# langchain-openai caches one async HTTP client per base URL for the whole process, and
# its pooled connections belong to the event loop that opened them; with one server for
# the module, the async tests must share one loop too. The standard suites mix sync and
# async tests in one class, so the mark reaches the sync ones, where it does nothing.
pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings(
        "ignore:The test <Function .*> is marked with '@pytest.mark.asyncio' but it is not "
        "an async function:pytest.PytestWarning"
    ),
]

_server: ScriptedOpenAIServer | None = None


@pytest.fixture(scope="module", autouse=True)
def scripted_backend() -> Iterator[ScriptedOpenAIServer]:
    """One scripted server for the module; the suites read it through `_server`."""
    global _server
    with ScriptedOpenAIServer() as server:
        _server = server
        try:
            yield server
        finally:
            _server = None


def _settings(base_url: str) -> dict[str, Any]:
    backend = OpenAICompatibleBackend(
        base_url=base_url, api_key=SecretStr("test"), max_retries=0, timeout=10
    )
    return {"analysis_models": PANEL, "judge_model": JUDGE, "backend": backend}


class TestFusionToolUnit(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[FusionTool]:
        return FusionTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return _settings(UNREACHABLE)

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"prompt": PROMPT}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        # Without a backend, the tool runs on OpenRouter as the environment configures it.
        return (
            {"OPENROUTER_API_KEY": "sk-from-env", "OPENROUTER_BASE_URL": UNREACHABLE},
            {"analysis_models": PANEL, "judge_model": JUDGE},
            {"name": "fusion", "response_format": "content_and_artifact"},
        )


class TestFusionToolIntegration(ToolsIntegrationTests):
    @property
    def tool_constructor(self) -> type[FusionTool]:
        return FusionTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        if _server is None:
            raise RuntimeError("the scripted server runs only while this module's tests do")
        return _settings(_server.base_url)

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"prompt": PROMPT}


def test_a_standard_invocation_deliberates_on_the_scripted_server(
    scripted_backend: ScriptedOpenAIServer,
) -> None:
    """What the standard suite's runs amount to: a real deliberation over HTTP."""
    scripted_backend.reset()
    tool = FusionTool(**_settings(scripted_backend.base_url))
    message = tool.invoke(
        {"type": "tool_call", "id": "1", "name": "fusion", "args": {"prompt": PROMPT}}
    )
    assert isinstance(message, ToolMessage)
    result = message.artifact
    assert isinstance(result, FusionResult)
    assert result.status == "ok"
    assert result.analysis is not None
    assert [r.model for r in result.responses] == PANEL
    assert {r.model for r in scripted_backend.requests} == {*PANEL, JUDGE}
