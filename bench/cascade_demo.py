"""The cascade, offline: a scripted panel on a data set whose truth is known.

    python -m bench.cascade_demo --out /tmp/cascade-demo

starts a scripted OpenAI-compatible server, writes the data set, and runs
`langchain-fusion eval` against it with every arm (each panelist, fusion, self-fusion,
majority vote and the cascade with `--cascade-first 2`), then prints the report. No key,
no network. What it shows is the mechanism and its accounting, not a gain on real models:
the panelists' answers are scripted (docs/eval.md).

The panel is two cheap seats then three dear ones. Each item is of one kind:

| kind | items | cheap-a | cheap-b | dear-c, dear-d, dear-e | what agreement means |
|---|---|---|---|---|---|
| easy | 10 | right | right | right | informative: they agree and are right |
| correlated | 4 | wrong (X) | wrong (X) | right | misleading: they agree and are wrong |
| independent | 4 | wrong (Y) | right | right | they disagree: the cascade escalates |
| dear-wrong | 2 | right | right | wrong (W), all three | informative: the cheap seats are right |

The judge reports a contradiction exactly when the answers it is shown differ
(`testing/judges.py`), and the outer model writes the most common answer it is shown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from langchain_fusion.testing.judges import comparing_judge, majority_writer
from langchain_fusion.testing.messages import last_user_text

CHEAP = ["cheap-a", "cheap-b"]
DEAR = ["dear-c", "dear-d", "dear-e"]
PANEL = [*CHEAP, *DEAR]
JUDGE = "judge-j"
KINDS = {"easy": 10, "correlated": 4, "independent": 4, "dear-wrong": 2}
PRICES = {
    **{model: {"prompt": 1e-6, "completion": 1e-6} for model in CHEAP},
    **{model: {"prompt": 1e-5, "completion": 1e-5} for model in DEAR},
    JUDGE: {"prompt": 3e-6, "completion": 3e-6},
}


def items() -> list[dict[str, Any]]:
    """The data set: `{"question", "answer", "kind"}`, in order."""
    rows: list[dict[str, Any]] = []
    for kind, count in KINDS.items():
        for _ in range(count):
            number = len(rows) + 1
            rows.append(
                {
                    "question": f"What is the code of item {number}? Answer with the code only.",
                    "answer": str(100 + number),
                    "kind": kind,
                }
            )
    return rows


def answer(model: str, item: dict[str, Any]) -> str:
    """What `model` answers on `item` (the table above)."""
    right, kind = str(item["answer"]), str(item["kind"])
    if kind == "correlated" and model in CHEAP:
        return f"{right}-X"
    if kind == "independent" and model == "cheap-a":
        return f"{right}-Y"
    if kind == "dear-wrong" and model in DEAR:
        return f"{right}-W"
    return right


def scripts() -> dict[str, ModelScript]:
    """Every model's script: panelists answer from the table; the judge compares, and
    writes the majority's answer when asked for the final one."""
    by_question = {item["question"]: item for item in items()}

    def panelist(model: str) -> Any:
        def reply(body: dict[str, Any]) -> str:
            return answer(model, by_question[last_user_text(body)])

        return reply

    scripted = {model: ModelScript(reply=panelist(model)) for model in PANEL}
    scripted[JUDGE] = ModelScript(json_reply=comparing_judge(), reply=majority_writer())
    return scripted


def write_data(directory: Path) -> tuple[Path, Path]:
    """The data set as JSONL and the prices as JSON, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    data, prices = directory / "cascade-data.jsonl", directory / "prices.json"
    data.write_text("".join(json.dumps(row) + "\n" for row in items()))
    prices.write_text(json.dumps(PRICES))
    return data, prices


def eval_arguments(base_url: str, data: Path, prices: Path, out: Path) -> list[str]:
    """`langchain-fusion eval`'s arguments for the demonstration."""
    return [
        *("eval", "--data", str(data), "--out", str(out), "--base-url", base_url),
        *("--models", ",".join(PANEL), "--judge", JUDGE, "--grader", "exact"),
        *("--cascade-first", "2", "--prices", str(prices), "--no-tools"),
        *("--no-langsmith", "--no-progress", "--concurrency", "4"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="The report's directory.")
    out = parser.parse_args().out or Path(tempfile.mkdtemp(prefix="cascade-demo-"))
    data, prices = write_data(out)
    with ScriptedOpenAIServer(scripts()) as server:
        arguments = eval_arguments(server.base_url, data, prices, out / "report")
        print("langchain-fusion " + " ".join(arguments), file=sys.stderr)
        entry = "import sys; from langchain_fusion.cli import main; main()"
        environment = {**os.environ, "OPENROUTER_API_KEY": "offline"}
        subprocess.run([sys.executable, "-c", entry, *arguments], check=True, env=environment)
    print((out / "report" / "report.md").read_text())


if __name__ == "__main__":
    main()
