"""`langchain-fusion eval` through `register(app)` and Typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from langchain_fusion.eval.cli import register
from langchain_fusion.testing import ScriptedOpenAIServer
from tests.test_eval_run import CORRECT, N, items, scripts


def make_app() -> typer.Typer:
    """An app with `eval` registered next to another command, as in the main CLI."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    register(app)
    return app


def write_items(path: Path) -> Path:
    path.write_text(
        "".join(
            json.dumps({"question": i.question, "answer": i.reference, "topic": "sums"}) + "\n"
            for i in items()
        )
    )
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_items(tmp_path / "data.jsonl")


def run_eval(server: ScriptedOpenAIServer, data: Path, out: Path, *arguments: str) -> Result:
    """`langchain-fusion eval` on `data` against the scripted `server`, LangSmith off."""
    return CliRunner().invoke(
        make_app(),
        [
            *("eval", "--data", str(data), "--out", str(out)),
            *("--base-url", server.base_url, "--no-langsmith", *arguments),
        ],
        env={"OPENROUTER_API_KEY": "test"},
    )


def test_eval_command_runs_and_reports(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with ScriptedOpenAIServer(scripts()) as server:
        result = run_eval(server, data, out, "--models", "a,b,c", "--judge", "j", "--no-tools")
    assert result.exit_code == 0, result.output
    assert "fusion" in result.stdout
    assert "self-fusion:a" in result.stdout
    assert "fusion vs single:a: won 2, lost 1, tied 5" in result.stdout
    report = json.loads((out / "results.json").read_text())
    assert report["config"]["grader"] == "numeric"  # numeric references: the numeric grader
    assert {a["name"]: a["correct"] for a in report["arms"]} == {
        "single:a": 5,
        "single:b": 4,
        "single:c": 3,
        "fusion": len(CORRECT["j"]),
        "self-fusion:a": len(CORRECT["j"]),
        "vote": 4,
    }
    assert all(a["n"] == N for a in report["arms"])
    assert (out / "report.md").exists()
    assert (out / "accuracy_vs_cost.png").exists()
    stored = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(stored) == 6 * N


def test_limit_sample_and_arms(data: Path, tmp_path: Path) -> None:
    with ScriptedOpenAIServer(scripts()) as server:
        result = run_eval(
            server, data, tmp_path / "o", "--models", "a,b", "--no-tools", "--arms", "single",
            "--sample", "5", "--seed", "3", "--limit", "2", "--grader", "normalized",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 2 * 2
    report = json.loads((tmp_path / "o" / "results.json").read_text())
    assert report["items"] == 2
    assert report["config"]["grader"] == "normalised"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--grader", "fuzzy"], "unknown grader 'fuzzy'"),
        (["--arms", "single,debate"], "unknown arm(s) ['debate']"),
        (["--modles", "a"], "No such option: --modles"),
        (["--concurrency", "0"], "Invalid value for '--concurrency'"),
        (["--max-tool-calls", "99"], "max_tool_calls = 99"),
        (["--grader", "llm"], "the llm grader needs a model"),
    ],
)
def test_bad_input_is_refused_before_any_call(
    data: Path, tmp_path: Path, arguments: list[str], message: str
) -> None:
    with ScriptedOpenAIServer(scripts()) as server:
        result = run_eval(
            server, data, tmp_path / "o", "--models", "a,b", "--judge", "j", *arguments
        )
        assert server.requests == []
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "o" / "records.jsonl").exists()


def test_missing_data_and_missing_sources(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(
        make_app(),
        ["eval", "--data", str(tmp_path / "nope.jsonl"), "--models", "a", "--out", str(tmp_path)],
    )
    assert missing.exit_code == 2
    assert "data file not found" in missing.output
    none = runner.invoke(make_app(), ["eval", "--models", "a", "--out", str(tmp_path)])
    assert none.exit_code == 2
    assert "exactly one of --data" in none.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    result = runner.invoke(
        make_app(), ["eval", "--data", str(bad), "--models", "a", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "bad.jsonl:1: missing 'answer'" in result.output
    no_ls = runner.invoke(
        make_app(),
        ["eval", "--langsmith-dataset", "x", "--models", "a", "--out", str(tmp_path)],
        env={"LANGSMITH_API_KEY": ""},
    )
    assert no_ls.exit_code == 2
    assert "needs LANGSMITH_API_KEY" in no_ls.output


def test_max_cost_refusal_names_the_estimate(data: Path, tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({m: {"prompt": 1e-6, "completion": 2e-6} for m in "abcj"}))
    with ScriptedOpenAIServer(scripts()) as server:
        result = run_eval(
            server, data, tmp_path / "o", "--models", "a,b", "--judge", "j",
            "--max-cost", "0.001", "--prices", str(prices), "--max-completion-tokens", "200",
        )  # fmt: skip
        assert server.requests == []
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "this run could spend up to $" in text
    assert "over --max-cost $0.001" in text


def test_the_main_cli_loads_eval_only_when_asked_for() -> None:
    """A prompt does not import the evaluation harness: no module of the CLI imports
    `langchain_fusion.eval` when it is imported (only inside functions, on demand)."""
    import ast

    import langchain_fusion.cli

    package = Path(langchain_fusion.cli.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("langchain_fusion.eval"), path.name
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("langchain_fusion.eval") for a in node.names)


def test_the_main_cli_dispatches_eval_and_lists_it() -> None:
    from langchain_fusion.cli import app

    result = CliRunner().invoke(app, ["eval", "--help"])
    assert result.exit_code == 0, result.output
    assert "--out" in result.output
    group = typer.main.get_command(app)
    assert "eval" in group.list_commands(None)  # type: ignore[attr-defined]
    missing = CliRunner().invoke(app, ["eval"])
    assert missing.exit_code == 2  # eval's own usage error (no --out), not a prompt
    assert "--out" in missing.output
