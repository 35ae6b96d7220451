"""The `langchain-fusion` command, run as a user runs it, against loopback servers.

End-to-end checks run the installed command in a subprocess, with pipes or under a
pseudo-terminal (where the live progress is drawn); checks that end before any model call
run in-process through Typer's `CliRunner`, which is much faster.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from langchain_fusion.cli import app
from langchain_fusion.local import LOCAL_MODEL_NAME
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

COMMAND = str(Path(sys.executable).with_name("langchain-fusion"))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ANSWER = "Ice is slippery because of a thin film of liquid water on its surface."
ANALYSIS = {
    "consensus": ["A thin liquid layer lowers friction"],
    "contradictions": [
        {
            "topic": "Role of pressure melting",
            "stances": [
                {"model": "panel-a", "stance": "Pressure melting is the main cause"},
                {"model": "panel-b", "stance": "Pressure melting is negligible"},
            ],
        }
    ],
    "partial_coverage": [{"models": ["panel-b"], "point": "Surface premelting below 0 C"}],
    "unique_insights": [{"model": "panel-a", "insight": "Skate blades heat the ice by friction"}],
    "blind_spots": ["How temperature changes the effect"],
}


def environment(server: ScriptedOpenAIServer | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENROUTER_")}
    if server is not None:
        env["OPENROUTER_BASE_URL"] = server.base_url
        env["OPENROUTER_API_KEY"] = "sk-or-test"
    return env


def run_cli(
    *args: str, server: ScriptedOpenAIServer | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=environment(server),
        timeout=240,
        check=False,
    )


def run_in_terminal(
    *args: str, server: ScriptedOpenAIServer, columns: int = 120
) -> tuple[int, str]:
    """Run the command with stdin, stdout and stderr on a pseudo-terminal; all it drew."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = environment(server) | {"TERM": "xterm-256color"}
    for setting in ["COLUMNS", "LINES", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"]:
        env.pop(setting, None)  # what the terminal says, not the environment, decides
    process = subprocess.Popen(
        [COMMAND, *args], stdin=terminal, stdout=terminal, stderr=terminal, env=env
    )
    os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.1)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the terminal closed with the process
                break
            if not data:
                break
            output += data
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
    return process.wait(timeout=10), output.decode(errors="replace")


def invoke(*args: str, server: ScriptedOpenAIServer | None = None, stdin: str = "") -> Any:
    """The command in this process (no subprocess start-up), with the given backend."""
    env: dict[str, str | None] = {"OPENROUTER_BASE_URL": None, "OPENROUTER_API_KEY": None}
    if server is not None:
        env = {"OPENROUTER_BASE_URL": server.base_url, "OPENROUTER_API_KEY": "sk-or-test"}
    return CliRunner().invoke(app, list(args), input=stdin, env=env)


# --- end to end ---------------------------------------------------------------------------


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
    # stderr is a pipe: no progress is drawn there.
    assert "\x1b" not in done.stderr
    assert "panel-a" not in done.stderr
    assert "waiting" not in done.stderr


def test_prompt_from_stdin_and_the_preset_panel(scripted_server: ScriptedOpenAIServer) -> None:
    done = invoke(
        "--preset",
        "general-budget",
        "--json",
        server=scripted_server,
        stdin="Why is ice slippery?\n",
    )
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert [r["model"] for r in data["responses"]] == [
        "~google/gemini-flash-latest",
        "deepseek/deepseek-v3.2",
        "~moonshotai/kimi-latest",
    ]
    (request,) = scripted_server.requests_for("deepseek/deepseek-v3.2")
    assert request.body["messages"][-1]["content"].strip() == "Why is ice slippery?"


def test_readable_output_shows_answer_analysis_failures_and_usage(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted_server.set_script("panel-a", ModelScript(cost_per_token=0.0001))
    scripted_server.set_script("panel-c", ModelScript(status_code=402))  # not retried
    scripted_server.set_script(
        "judge-j", ModelScript(reply=ANSWER, json_reply=ANALYSIS, cost_per_token=0.0002)
    )
    done = invoke(
        "--models", "panel-a,panel-b,panel-c", "--judge", "judge-j", "Why?", server=scripted_server
    )
    assert done.exit_code == 0, done.output
    out = done.stdout
    assert "Answer" in out
    assert ANSWER in " ".join(out.split())  # rendered as markdown, maybe wrapped
    for heading in ["Consensus", "Contradictions", "Partial coverage", "Unique insights"]:
        assert heading in out
    flat = " ".join(out.split())
    for text in [
        "A thin liquid layer lowers friction",
        "Role of pressure melting",
        "Pressure melting is negligible",
        "Surface premelting below 0 C",
        "Skate blades heat the ice by friction",
        "How temperature changes the effect",
    ]:
        assert text in flat, text
    # Each model's stance sits on its own row, next to the model's name.
    assert re.search(r"panel-b\s*│\s*Pressure melting is negligible", out)
    assert "Failed panelists" in out
    assert re.search(r"panel-c\s*│\s*402", out)
    # A usage and cost line per stage, then the total.
    rows = {line.split()[1]: line for line in out.splitlines() if re.match(r"│ \w+ +│", line)}
    for stage in ["panel", "judge", "synthesis", "total"]:
        assert stage in rows, stage
    assert "$" in rows["panel"]
    assert "$" in rows["judge"]
    assert "\x1b" not in out  # stdout is a pipe: plain text


def test_failed_run_exits_non_zero(scripted_server: ScriptedOpenAIServer) -> None:
    # Statuses the OpenAI client does not retry, so the test need not wait out backoffs.
    scripted_server.set_script("panel-a", ModelScript(status_code=400))
    scripted_server.set_script("panel-b", ModelScript(status_code=403))
    done = invoke("--models", "panel-a,panel-b", "--json", "Hi?", server=scripted_server)
    assert done.exit_code == 1
    data = json.loads(done.stdout)
    assert data["status"] == "error"
    assert data["failure_reason"] == "all_panels_failed"
    assert {f["status_code"] for f in data["failed_models"]} == {400, 403}


def test_live_progress_is_drawn_on_a_terminal(scripted_server: ScriptedOpenAIServer) -> None:
    # Latency, so that the run lasts long enough for the view to redraw as it goes.
    scripted_server.set_script(
        "panel-a", ModelScript(time_to_first_token=0.2, tokens_per_second=50)
    )
    scripted_server.set_script(
        "panel-b", ModelScript(time_to_first_token=0.4, tokens_per_second=40)
    )
    scripted_server.set_script("judge-j", ModelScript(reply=ANSWER))
    code, drawn = run_in_terminal(
        "--models", "panel-a,panel-b", "--judge", "judge-j", "Why?", server=scripted_server
    )
    assert code == 0, drawn
    assert "\x1b[" in drawn  # drawn with terminal control sequences
    plain = ANSI.sub("", drawn)
    frames = plain.count("panelists answered")
    assert frames > 5  # redrawn while the run went on, not printed once at the end
    assert "0/2 panelists answered" in plain
    assert "2/2 panelists answered" in plain
    for state in ["waiting", "streaming", "done"]:
        assert state in plain, state
    rows = [line for line in plain.splitlines() if "panel-a" in line or "panel-b" in line]
    assert any(re.search(r"panel-a\s+streaming\s+\d+", row) for row in rows)
    assert any(re.search(r"panel-b\s+done\s+\d+", row) for row in rows)
    assert re.search(r"judge\s+judge-j\s+done", plain)
    assert re.search(r"answer\s+judge-j\s+(streaming|done)", plain)
    assert ANSWER in " ".join(plain.split())
    assert "Usage" in plain


def test_without_a_key_it_runs_offline_on_the_embedded_model(
    scripted_local_model: ScriptedOpenAIServer,
) -> None:
    # The embedded model's server is stood in for (tests/local_stand_in.py): what is
    # checked is the offline wiring; test_local_model.py runs the real SmolLM2.
    done = invoke("--json", "Name a prime number.")
    assert done.exit_code == 0, done.output
    assert "Running offline on the embedded SmolLM2" in done.stderr
    assert "no OPENROUTER_API_KEY set" in done.stderr
    data = json.loads(done.stdout)
    assert data["status"] == "ok"
    assert len(data["responses"]) == 3
    assert data["answer"].strip()
    panel = [r for r in scripted_local_model.requests if r.body.get("seed") is not None]
    assert sorted(r.body["seed"] for r in panel) == [0, 1, 2]  # three seats, three seeds
    assert {r.model for r in scripted_local_model.requests} == {LOCAL_MODEL_NAME}
    assert all(r.body["frequency_penalty"] == 0.5 for r in scripted_local_model.requests)


# --- input checks, in-process ---------------------------------------------------------------


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
    done = invoke(*args, "Hi?", server=scripted_server)
    assert done.exit_code == 2
    assert field in done.stderr
    assert allowed in done.stderr
    assert scripted_server.requests == []


def test_missing_prompt_is_a_usage_error() -> None:
    done = invoke(stdin="")
    assert done.exit_code == 2
    assert "prompt" in done.stderr


@pytest.mark.parametrize(
    ("args", "prompt"),
    [
        # Only a first argument that is exactly a command's name selects the command.
        (["serve me a poem", "--json", "--models", "panel-a"], "serve me a poem"),
        (["--json", "--models", "panel-a", "serve"], "serve"),
        (["run", "--json", "--models", "panel-a", "serve"], "serve"),
        (["--json", "--models", "panel-a", "--", "serve"], "serve"),
    ],
)
def test_anything_but_a_leading_command_name_is_a_prompt(
    scripted_server: ScriptedOpenAIServer, args: list[str], prompt: str
) -> None:
    done = invoke(*args, server=scripted_server)
    assert done.exit_code == 0, done.output
    (request,) = scripted_server.requests_for("panel-a")
    assert request.body["messages"][-1]["content"] == prompt


def test_help_explains_both_commands() -> None:
    done = invoke("--help")
    assert done.exit_code == 0
    text = " ".join(done.output.split())
    assert "--models" in text
    assert "langchain-fusion serve --help" in text
    serve_help = " ".join(invoke("serve", "--help").output.split())
    for option in ["--host", "--port", "--local", "--server-key"]:
        assert option in serve_help


def test_serve_refuses_bad_parameters_before_starting(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    done = invoke("serve", "--max-tool-calls", "99", "--port", "0", server=scripted_server)
    assert done.exit_code == 2
    assert "max_tool_calls" in done.stderr
    assert scripted_server.requests == []


# --- serve, end to end -------------------------------------------------------------------------


@contextlib.contextmanager
def serving(*args: str, server: ScriptedOpenAIServer) -> Iterator[str]:
    """`langchain-fusion serve` in a subprocess on a free port; yields its base URL."""
    process = subprocess.Popen(
        [COMMAND, "serve", "--port", "0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(server),
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # "Serving ... on http://127.0.0.1:PORT/v1 ..."
        match = re.search(r"http://127\.0\.0\.1:\d+/v1", line)
        assert match, line
        yield match.group(0)
    finally:
        process.send_signal(signal.SIGINT)  # uvicorn shuts down gracefully on Ctrl-C
        assert process.wait(timeout=10) == 0  # a clean stop


def test_serve_answers_openai_requests(scripted_server: ScriptedOpenAIServer) -> None:
    with serving(
        "--models", "panel-a,panel-b", "--judge", "judge-j", server=scripted_server
    ) as url:
        models = httpx.get(f"{url}/models", timeout=10).json()
        assert [m["id"] for m in models["data"]] == ["openrouter/fusion", "openrouter/fusion-flash"]
        response = httpx.post(
            f"{url}/chat/completions",
            json={
                "model": "openrouter/fusion-flash",
                "messages": [{"role": "user", "content": "Why is ice slippery?"}],
                "tool_choice": "required",
            },
            timeout=30,
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "judge-j"  # the outer model (the judge by default), not the alias
    assert body["choices"][0]["message"]["content"]
    assert [r["model"] for r in body["fusion"]["responses"]] == ["panel-a", "panel-b"]
