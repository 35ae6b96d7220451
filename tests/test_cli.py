"""The `langchain-fusion` command, run as a user runs it, against loopback servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

COMMAND = str(Path(sys.executable).with_name("langchain-fusion"))


def run_cli(
    *args: str, server: ScriptedOpenAIServer | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENROUTER_")}
    if server is not None:
        env["OPENROUTER_BASE_URL"] = server.base_url
        env["OPENROUTER_API_KEY"] = "sk-or-test"
    return subprocess.run(
        [COMMAND, *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )


def test_json_output_is_the_contract_plus_the_answer(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    done = run_cli(
        "--models",
        "panel-a,panel-b",
        "--judge",
        "judge-j",
        "--temperature",
        "0.3",
        "--json",
        "What is a monad?",
        server=scripted_server,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # nothing but JSON on stdout
    assert data["status"] == "ok"
    assert [r["model"] for r in data["responses"]] == ["panel-a", "panel-b"]
    assert set(data["analysis"]) == {
        "consensus",
        "contradictions",
        "partial_coverage",
        "unique_insights",
        "blind_spots",
    }
    synthesis = scripted_server.requests_for("judge-j")[-1]
    assert data["answer"] == synthesis.response_text
    for model in ["panel-a", "panel-b"]:
        (request,) = scripted_server.requests_for(model)
        assert request.body["temperature"] == 0.3
        assert request.body["messages"][-1]["content"] == "What is a monad?"
    assert "offline" not in done.stderr  # a configured endpoint is used, not the local model


def test_prompt_from_stdin_and_the_preset_panel(scripted_server: ScriptedOpenAIServer) -> None:
    done = run_cli(
        "--preset",
        "general-budget",
        "--json",
        server=scripted_server,
        stdin="Why is ice slippery?\n",
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [r["model"] for r in data["responses"]] == [
        "~google/gemini-flash-latest",
        "deepseek/deepseek-v3.2",
        "~moonshotai/kimi-latest",
    ]
    (request,) = scripted_server.requests_for("deepseek/deepseek-v3.2")
    assert request.body["messages"][-1]["content"].strip() == "Why is ice slippery?"


def test_readable_output_shows_answer_analysis_and_usage(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    done = run_cli("--models", "panel-a,panel-b", "Explain CRDTs.", server=scripted_server)
    assert done.returncode == 0, done.stderr
    for heading in ["Answer", "Analysis", "Consensus", "usage: panel"]:
        assert heading in done.stdout


def test_failed_run_exits_non_zero(scripted_server: ScriptedOpenAIServer) -> None:
    for model in ["panel-a", "panel-b"]:
        scripted_server.set_script(model, ModelScript(status_code=500))
    done = run_cli("--models", "panel-a,panel-b", "--json", "Hi?", server=scripted_server)
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["status"] == "error"
    assert data["failure_reason"] == "all_panels_failed"
    assert {f["status_code"] for f in data["failed_models"]} == {500}


@pytest.mark.parametrize(
    ("args", "field", "allowed"),
    [
        (["--max-tool-calls", "20"], "max_tool_calls", "1 to 16"),
        (["--temperature", "2.5"], "temperature", "0 to 2"),
        (["--models", ",".join(f"m{i}" for i in range(9))], "analysis_models", "1 to 8"),
        (["--preset", "general-huge"], "preset", "general-high"),
    ],
)
def test_bad_parameters_exit_2_before_any_call(
    scripted_server: ScriptedOpenAIServer, args: list[str], field: str, allowed: str
) -> None:
    done = run_cli(*args, "Hi?", server=scripted_server)
    assert done.returncode == 2
    assert field in done.stderr
    assert allowed in done.stderr
    assert scripted_server.requests == []


def test_missing_prompt_is_a_usage_error() -> None:
    done = run_cli(stdin="")
    assert done.returncode == 2
    assert "prompt" in done.stderr


@pytest.mark.local_model
def test_without_a_key_it_runs_offline_on_the_embedded_model() -> None:
    done = run_cli("--json", "Name a prime number.")
    assert done.returncode == 0, done.stderr
    assert "Running offline on the embedded SmolLM2" in done.stderr
    assert "no OPENROUTER_API_KEY set" in done.stderr
    data = json.loads(done.stdout)
    assert data["status"] == "ok"
    assert len(data["responses"]) == 3
    assert data["answer"].strip()
