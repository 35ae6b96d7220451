"""`eval --local`: three items, every arm that applies, the plot, on the embedded model's
wiring (its server stood in for by the scripted server: tests/local_stand_in.py)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from langchain_fusion.local import LOCAL_MODEL_NAME
from langchain_fusion.testing import ScriptedOpenAIServer
from tests.test_eval_cli import make_app


def test_a_tiny_local_run_writes_the_report_and_the_plot(
    tmp_path: Path, scripted_local_model: ScriptedOpenAIServer
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {"question": f"What is {a} plus {b}? Answer with the number.", "answer": a + b}
            )
            + "\n"
            for a, b in ((2, 3), (10, 5), (7, 1))
        )
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        make_app(),
        [
            "eval",
            "--local",
            "--data",
            str(data),
            "--out",
            str(out),
            "--no-langsmith",
            "--max-completion-tokens",
            "32",
            "--concurrency",
            "3",
            "--arms",
            "single,fusion,vote",
        ],
        env={"OPENROUTER_API_KEY": None, "OPENROUTER_BASE_URL": None},
    )
    assert result.exit_code == 0, result.output
    requests = scripted_local_model.requests
    assert requests
    assert {r.model for r in requests} == {LOCAL_MODEL_NAME}
    assert all(r.body["frequency_penalty"] == 0.5 for r in requests)  # the local settings
    report = json.loads((out / "results.json").read_text())
    names = [arm["name"] for arm in report["arms"]]
    assert names == ["single:smollm2-135m-instruct", "fusion", "vote"]
    assert report["complete"]
    assert report["items"] == 3
    for arm in report["arms"]:
        assert arm["n"] == 3
        assert 0 <= arm["correct"] <= 3
        assert arm["total_tokens"] > 0
    fusion = next(a for a in report["arms"] if a["name"] == "fusion")
    single = report["arms"][0]
    assert fusion["total_tokens"] > single["total_tokens"]  # panel, judge and synthesis
    assert (out / "accuracy_vs_cost.png").read_bytes().startswith(b"\x89PNG")
    assert len((out / "records.jsonl").read_text().splitlines()) == 9
