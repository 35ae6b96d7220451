"""Long runs: a killed or cancelled run resumes without repeating a finished call, and
`max_cost` refuses a run whose worst case is over it (no call made) or stops starting
new items once spending reaches it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from langchain_fusion.eval import BudgetError, EvalConfig, arun_eval, run_eval
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from tests.test_eval_run import CORRECT, N, answers, config, items, scripts

CLI = (
    "import sys, typer\n"
    "from langchain_fusion.eval.cli import register\n"
    "app = typer.Typer()\n"
    "@app.callback()\n"
    "def main() -> None: pass\n"
    "register(app)\n"
    "app()\n"
)


def write_items(path: Path, count: int = N) -> Path:
    with path.open("w") as file:
        for item in items()[:count]:
            file.write(
                json.dumps({"id": item.id, "question": item.question, "answer": item.reference})
                + "\n"
            )
    return path


def stored(out: Path) -> set[tuple[str, str]]:
    path = out / "records.jsonl"
    if not path.exists():
        return set()
    done = set()
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by the kill
        done.add((record["arm"], record["item"]))
    return done


def question_of(body: dict[str, Any]) -> str:
    text = json.dumps(body["messages"])
    for item in items():
        if item.question in text:
            return item.id
    raise AssertionError("no question")


def slow_scripts() -> dict[str, ModelScript]:
    return {
        model: ModelScript(reply=answers(correct), time_to_first_token=0.15)
        for model, correct in CORRECT.items()
    }


def test_a_killed_cli_run_resumes_and_repeats_no_finished_call(tmp_path: Path) -> None:
    data = write_items(tmp_path / "data.jsonl")
    out = tmp_path / "out"
    with ScriptedOpenAIServer(slow_scripts()) as server:
        args = [
            sys.executable,
            "-c",
            CLI,
            "eval",
            "--data",
            str(data),
            "--out",
            str(out),
            "--models",
            "a,b",
            "--judge",
            "j",
            "--arms",
            "single,fusion",
            "--no-tools",
            "--base-url",
            server.base_url,
            "--concurrency",
            "2",
            "--no-langsmith",
        ]
        env = {**os.environ, "OPENROUTER_API_KEY": "test"}
        process = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + 120
        while len(stored(out)) < 5:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)  # a crash: no cleanup, no flush
        process.wait()
        killed_at = time.monotonic()
        before = stored(out)
        assert 5 <= len(before) < 3 * N, "killed half-way"

        from typer.testing import CliRunner

        from tests.test_eval_cli import make_app

        result = CliRunner().invoke(make_app(), args[3:], env=env)
        assert result.exit_code == 0, result.output

        after_kill = [r for r in server.requests if r.received_at > killed_at]
        for model, arms in (
            ("a", ("single:a", "fusion")),
            ("b", ("single:b", "fusion")),
            ("j", ("fusion", "fusion")),
        ):
            for item in items():
                calls = sum(
                    1 for r in after_kill if r.model == model and question_of(r.body) == item.id
                )
                # One call per arm still to run on this item, none for a stored one.
                owed = sum(1 for arm in arms if (arm, item.id) not in before)
                assert calls == owed, (model, item.id)
    report = json.loads((out / "results.json").read_text())
    assert report["complete"]
    assert {arm["name"]: arm["correct"] for arm in report["arms"]} == {
        "single:a": len(CORRECT["a"]),
        "single:b": len(CORRECT["b"]),
        "fusion": len(CORRECT["j"]),
    }
    assert len(stored(out)) == 3 * N


async def test_a_cancelled_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(slow_scripts()) as server:
        settings = config(server, arms=["single"], out_dir=tmp_path, concurrency=2)
        task = asyncio.create_task(arun_eval(items(), settings))
        while len(stored(tmp_path)) < 4:  # noqa: ASYNC110 (polling a file another task writes)
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.5)  # a request cut off in flight reaches the log first
        first = stored(tmp_path)
        resumed_at = time.monotonic()
        report = await arun_eval(items(), settings)
        resumed = [r for r in server.requests if r.received_at > resumed_at]
    assert len(resumed) == 3 * N - len(first)
    for request in resumed:
        assert (f"single:{request.model}", question_of(request.body)) not in first
    assert {arm.name: arm.correct for arm in report.arms} == {
        "single:a": 5,
        "single:b": 4,
        "single:c": 3,
    }
    # A finished run makes no call at all when run again.
    with ScriptedOpenAIServer(slow_scripts()) as server:
        again = await arun_eval(items(), config(server, arms=["single"], out_dir=tmp_path))
        assert server.requests == []
    assert again.arms == report.arms


def test_changed_settings_do_not_reuse_stored_answers(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(scripts()) as server:
        run_eval(items()[:2], config(server, arms=["single"], out_dir=tmp_path))
        calls = len(server.requests)
        run_eval(
            items()[:2], config(server, arms=["single"], out_dir=tmp_path, instructions="Be brief.")
        )
        assert len(server.requests) == 2 * calls


def test_max_cost_below_the_estimate_refuses_before_any_call(tmp_path: Path) -> None:
    prices = {m: {"prompt": 1e-6, "completion": 1e-6} for m in ("a", "b", "c", "j")}
    with ScriptedOpenAIServer(scripts()) as server:
        settings = config(
            server,
            out_dir=tmp_path,
            prices=prices,
            max_cost=0.01,
            parameters={"tools": [], "max_completion_tokens": 500},
        )
        with pytest.raises(BudgetError, match=r"could spend up to \$\d+\.\d+ \(\d+ calls"):
            run_eval(items(), settings)
        with pytest.raises(BudgetError, match="max-completion-tokens"):
            run_eval(items(), config(server, prices=prices, max_cost=1.0))
        assert server.requests == []
        with pytest.raises(BudgetError, match="price for every model; none for c, j"):
            run_eval(
                items(),
                config(
                    server,
                    prices={"a": prices["a"], "b": prices["b"]},
                    max_cost=100.0,
                    parameters={"tools": [], "max_completion_tokens": 50},
                ),
            )
        # Prices missing: the backend's model list was asked for them, and no model was called.
        assert [r.path for r in server.requests] == ["/v1/models"]
    assert not (tmp_path / "records.jsonl").exists()


def test_the_estimate_counts_every_arm_and_tool_step() -> None:
    prices = {m: {"prompt": 1e-6, "completion": 1e-6} for m in ("a", "b", "c", "j")}
    with ScriptedOpenAIServer(scripts()) as server:

        def estimate(**overrides: Any) -> float:
            settings = config(server, prices=prices, max_cost=1e-9, **overrides)
            with pytest.raises(BudgetError) as refused:
                run_eval(items(), settings)
            return float(str(refused.value).split("$")[1].split(" ")[0])

        singles = estimate(arms=["single"], parameters={"tools": [], "max_completion_tokens": 100})
        both = estimate(
            arms=["single", "fusion"], parameters={"tools": [], "max_completion_tokens": 100}
        )
        research = estimate(arms=["single"], parameters={"max_completion_tokens": 100})
        assert 0 < singles < both
        assert singles < research
        assert server.requests == []


def test_spending_reaching_max_cost_stops_new_items(tmp_path: Path) -> None:
    # Listed prices under-state what the backend charges: the estimate fits, the bill does not.
    cheap = {m: {"prompt": 1e-9, "completion": 1e-9} for m in ("a", "b", "c", "j")}
    expensive = {m: ModelScript(reply=answers(CORRECT[m]), cost_per_token=1e-3) for m in CORRECT}
    with ScriptedOpenAIServer(expensive) as server:
        settings = config(
            server,
            arms=["single"],
            prices=cheap,
            max_cost=0.05,
            concurrency=1,
            out_dir=tmp_path,
            parameters={"tools": [], "max_completion_tokens": 50},
        )
        report = run_eval(items(), settings)
        calls = len(server.requests)
    assert report.stopped is not None
    assert "max-cost" in report.stopped
    assert not report.complete
    assert 0 < calls < 3 * N
    spent = sum(arm.cost or 0.0 for arm in report.arms)
    assert spent >= 0.05
    # Only the item that crossed the line was started past it.
    assert (
        spent
        - max(
            r["cost"]
            for r in map(json.loads, (tmp_path / "records.jsonl").read_text().splitlines())
        )
        < 0.05
    )


def test_errors_are_kept_unless_retried(tmp_path: Path) -> None:
    failing = {**scripts(), "b": ModelScript(status_code=400)}
    with ScriptedOpenAIServer(failing) as server:
        run_eval(items()[:2], config(server, arms=["single"], out_dir=tmp_path))
    with ScriptedOpenAIServer(scripts()) as server:
        kept = run_eval(items()[:2], config(server, arms=["single"], out_dir=tmp_path))
        assert server.requests == []
        assert kept.arm("single:b").errors == 2
        retried = run_eval(
            items()[:2], config(server, arms=["single"], out_dir=tmp_path, retry_errors=True)
        )
        assert len(server.requests) == 2
        assert [r.model for r in server.requests] == ["b", "b"]
    assert retried.arm("single:b").errors == 0
    assert retried.arm("single:b").correct == len(CORRECT["b"] & {0, 1})


def test_config_errors_are_refused_before_any_call() -> None:
    from langchain_fusion.eval import EvalConfigError

    with ScriptedOpenAIServer(scripts()) as server:
        for bad in (
            {"grader": "fuzzy"},
            {"arms": ["single", "debate"]},
            {"judge": None},
            {"grader": "llm"},
            {"arms": ["vote"], "grader": "regex"},
            {"concurrency": 0},
        ):
            with pytest.raises(EvalConfigError):
                run_eval(items(), config(server, **bad))
        assert isinstance(config(server), EvalConfig)
        assert server.requests == []


def test_a_new_grader_regrades_stored_answers_without_calling_an_arm(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(scripts()) as server:
        numeric = run_eval(items(), config(server, arms=["single"], out_dir=tmp_path))
        calls = len(server.requests)
        # The stored answers read "... The answer is 2i." : the regex grader wants "is 0".
        regex = run_eval(
            [item.__class__(item.id, item.question, r"answer is 0\.") for item in items()],
            config(server, arms=["single"], out_dir=tmp_path, grader="regex"),
        )
        assert len(server.requests) == calls
    assert numeric.arm("single:a").correct == len(CORRECT["a"])
    assert regex.arm("single:a").correct == 1  # only item 0's answer is "0."
    assert regex.config["grader"] == "regex"
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert {r["grader"] for r in records} == {"numeric", "regex"}
