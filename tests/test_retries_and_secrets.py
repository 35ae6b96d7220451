"""Retries (the OpenAI client's own: backoff, jitter, Retry-After) and secrets that never leak."""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any

import pytest
from langchain_core.load import dumpd
from pydantic import SecretStr

from langchain_fusion import (
    ChatFusion,
    FusionParameters,
    FusionTool,
    OpenAICompatibleBackend,
    create_fusion_graph,
)
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

FAKE_KEY = "sk-or-v1-FAKE-SECRET-7c1d2e3f4a5b6c7d8e9f"


def one_panelist(server: ScriptedOpenAIServer, **backend: Any) -> Any:
    settings: dict[str, Any] = {"base_url": server.base_url, "api_key": SecretStr("k")}
    settings.update(backend)
    return create_fusion_graph(
        FusionParameters(analysis_models=["panel-a"], model="judge-j", tools=[]),
        backend=OpenAICompatibleBackend(**settings),
        synthesize=False,
    )


def test_429_is_retried_after_retry_after(scripted_server: ScriptedOpenAIServer) -> None:
    scripted_server.set_script(
        "panel-a", ModelScript(status_code=429, retry_after=0.4, fail_first=1)
    )
    result = one_panelist(scripted_server, max_retries=2).invoke({"messages": "q"})["result"]
    first, second = scripted_server.requests_for("panel-a")
    assert (first.status_code, second.status_code) == (429, 200)
    assert second.received_at - first.received_at >= 0.4  # Retry-After honoured
    assert [r.model for r in result.responses] == ["panel-a"]


def test_5xx_is_retried_with_a_bounded_count(scripted_server: ScriptedOpenAIServer) -> None:
    scripted_server.set_script("panel-a", ModelScript(status_code=502, retry_after=0))
    result = one_panelist(scripted_server, max_retries=2).invoke({"messages": "q"})["result"]
    assert [r.status_code for r in scripted_server.requests_for("panel-a")] == [502] * 3
    (failure,) = result.failed_models
    assert failure.status_code == 502
    assert "scripted failure" in failure.error  # the upstream text, not a generic message


def test_a_retry_after_beyond_two_minutes_fails_fast(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted_server.set_script(
        "panel-a", ModelScript(status_code=503, retry_after=3600, fail_first=1)
    )
    started = time.monotonic()
    result = one_panelist(scripted_server, max_retries=3).invoke({"messages": "q"})["result"]
    assert time.monotonic() - started < 5  # the client will not wait an hour, nor retry
    assert len(scripted_server.requests_for("panel-a")) == 1
    assert result.failed_models[0].status_code == 503


@pytest.mark.parametrize("status", [400, 401, 402, 404])
def test_errors_that_will_not_change_are_not_retried(
    scripted_server: ScriptedOpenAIServer, status: int
) -> None:
    scripted_server.set_script("panel-a", ModelScript(status_code=status, retry_after=0))
    result = one_panelist(scripted_server, max_retries=3).invoke({"messages": "q"})["result"]
    assert len(scripted_server.requests_for("panel-a")) == 1
    assert result.failed_models[0].status_code == status


def test_connection_errors_are_reported_without_a_status() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    graph = create_fusion_graph(
        FusionParameters(analysis_models=["panel-a"], model="judge-j", tools=[]),
        backend=OpenAICompatibleBackend(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=SecretStr("k"), max_retries=1
        ),
        synthesize=False,
    )
    result = graph.invoke({"messages": "q"})["result"]
    (failure,) = result.failed_models
    assert failure.status_code is None
    assert "Connection" in failure.error
    assert result.failure_reason == "all_panels_failed"


def test_the_key_never_appears_in_reprs_logs_errors_results_or_payloads(
    scripted_server: ScriptedOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    scripted_server.set_script("panel-b", ModelScript(status_code=401))
    scripted_server.set_script(
        "outer-o", ModelScript(tool_calls=[{"name": "fusion", "arguments": {"prompt": "q"}}])
    )
    backend = OpenAICompatibleBackend(
        base_url=scripted_server.base_url, api_key=SecretStr(FAKE_KEY), max_retries=0
    )
    tool = FusionTool(
        analysis_models=["panel-a", "panel-b"], judge_model="judge-j", backend=backend
    )
    llm = ChatFusion(
        analysis_models=["panel-a", "panel-b"],
        judge_model="judge-j",
        outer_model="outer-o",
        base_url=scripted_server.base_url,
        api_key=FAKE_KEY,
        max_retries=0,
    )
    seen: list[str] = [repr(backend), str(backend), repr(tool), repr(llm), str(llm)]
    seen.append(json.dumps(dumpd(llm), default=str))
    message = llm.invoke("q")
    seen += [repr(message), json.dumps(message.response_metadata, default=str)]
    tool_message = tool.invoke(
        {"type": "tool_call", "id": "c", "name": "fusion", "args": {"prompt": "q"}}
    )
    seen += [repr(tool_message), tool_message.artifact.model_dump_json()]
    seen += [record.getMessage() for record in caplog.records]
    seen += [str(record.args) for record in caplog.records]
    try:
        create_fusion_graph({"max_tool_calls": 99}, backend=backend)
    except ValueError as error:
        seen.append(str(error))
    assert any("401" in text for text in seen)  # the failure itself was recorded
    assert all(FAKE_KEY not in text for text in seen)
    # It was sent, where it belongs: the Authorization header.
    assert (
        scripted_server.requests_for("panel-a")[0].headers["authorization"] == f"Bearer {FAKE_KEY}"
    )
