"""`langchain_fusion.eval` against the scripted server: every figure equals the known truth.

Each panelist is scripted to answer a chosen set of items correctly (and the rest with one
shared wrong number), the synthesis model another set, so accuracy, the vote, the paired
comparison and (from the server's request log) tokens and cost are known exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from langchain_fusion import OpenAICompatibleBackend
from langchain_fusion.eval import EvalConfig, EvalItem, EvalReport, arun_eval, run_eval
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

N = 8
CORRECT = {
    "a": {0, 1, 2, 3, 4},
    "b": {2, 3, 5, 6},
    "c": {0, 5, 7},
    "j": {0, 1, 2, 3, 6, 7},  # the synthesis (the judge writes the final answer)
}
COST_PER_TOKEN = {"a": 1e-6, "b": 2e-6, "c": 3e-6, "j": 1e-5}
_QUESTION = re.compile(r"Q(\d+): what is")
_WORD_TOKENS = re.compile(r"\s*\S+\s*|\s+")


def items() -> list[EvalItem]:
    return [EvalItem(f"q{i}", f"Q{i}: what is {i} plus {i}?", 2 * i) for i in range(N)]


def _item_index(body: dict[str, Any]) -> int:
    for message in body["messages"]:
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        found = _QUESTION.search(text)
        if found:
            return int(found.group(1))
    raise AssertionError(f"no question in {body}")


def answers(correct: set[int]) -> Callable[[dict[str, Any]], str]:
    def reply(body: dict[str, Any]) -> str:
        i = _item_index(body)
        return f"Let me think. The answer is {2 * i if i in correct else 2 * i + 1}."

    return reply


def scripts(cost: bool = True) -> dict[str, ModelScript]:
    return {
        model: ModelScript(
            reply=answers(correct), cost_per_token=COST_PER_TOKEN[model] if cost else None
        )
        for model, correct in CORRECT.items()
    }


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(scripts()) as running:
        yield running


def config(server: ScriptedOpenAIServer, **overrides: Any) -> EvalConfig:
    settings: dict[str, Any] = {
        "models": ["a", "b", "c"],
        "judge": "j",
        "backend": OpenAICompatibleBackend(base_url=server.base_url, api_key="test"),
        "parameters": {"tools": []},
        "concurrency": 3,
    }
    settings.update(overrides)
    return EvalConfig(**settings)


def truth_tokens_and_cost(server: ScriptedOpenAIServer) -> tuple[int, float]:
    """What the server billed: prompt words + completion word-tokens, times the price."""
    tokens, cost = 0, 0.0
    for request in server.requests:
        prompt = sum(
            len(str(message.get("content") or "").split()) for message in request.body["messages"]
        )
        completion = len(_WORD_TOKENS.findall(request.response_text or ""))
        tokens += prompt + completion
        cost += (prompt + completion) * COST_PER_TOKEN[request.model]
    return tokens, cost


def expected_vote() -> set[int]:
    return {i for i in range(N) if sum(i in CORRECT[m] for m in ("a", "b", "c")) >= 2}


def test_accuracy_counts_and_comparisons_equal_the_truth(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    report = run_eval(items(), config(server, out_dir=tmp_path))

    expected = {
        "single:a": CORRECT["a"],
        "single:b": CORRECT["b"],
        "single:c": CORRECT["c"],
        "fusion": CORRECT["j"],
        "self-fusion:a": CORRECT["j"],
        "vote": expected_vote(),
    }
    assert [arm.name for arm in report.arms] == list(expected)
    for name, correct in expected.items():
        arm = report.arm(name)
        assert (arm.n, arm.correct, arm.errors) == (N, len(correct), 0), name
        assert arm.accuracy == len(correct) / N
        assert arm.accuracy_ci is not None
        assert arm.accuracy_ci[0] <= arm.accuracy <= arm.accuracy_ci[1]
        assert arm.accuracy_ci[1] - arm.accuracy_ci[0] > 0  # 8 items: a wide interval
    assert report.complete
    assert report.items == N

    # Which items each arm got right, as stored.
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    for name, correct in expected.items():
        right = {int(r["item"][1:]) for r in records if r["arm"] == name and r["correct"]}
        assert right == correct, name

    # Paired comparison against the best single model (a, 5/8), counted by hand.
    assert report.best_single == "single:a"
    by_arm = {c.arm: c for c in report.comparisons}
    fusion = by_arm["fusion"]
    won, lost = CORRECT["j"] - CORRECT["a"], CORRECT["a"] - CORRECT["j"]
    assert (fusion.n, fusion.won, fusion.lost, fusion.tied) == (
        N,
        len(won),
        len(lost),
        N - len(won) - len(lost),
    )
    assert fusion.difference == pytest.approx((len(won) - len(lost)) / N)
    assert fusion.difference_ci is not None
    assert fusion.difference is not None
    assert fusion.difference_ci[0] <= fusion.difference <= fusion.difference_ci[1]
    vote = by_arm["vote"]
    assert (vote.won, vote.lost) == (
        len(expected_vote() - CORRECT["a"]),
        len(CORRECT["a"] - expected_vote()),
    )
    assert set(by_arm) == {"fusion", "self-fusion:a", "vote"}

    # The files: results.json is the report; report.md has the table; the plot exists.
    assert EvalReport.model_validate_json((tmp_path / "results.json").read_text()) == report
    markdown = (tmp_path / "report.md").read_text()
    assert "| fusion | 8 | 6 | 75.0%" in markdown
    png = (tmp_path / "accuracy_vs_cost.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert len(png) > 5_000


@pytest.mark.parametrize("kind", ["single", "fusion", "self-fusion", "vote"])
def test_tokens_and_reported_cost_equal_what_the_server_billed(
    server: ScriptedOpenAIServer, kind: str
) -> None:
    report = run_eval(items(), config(server, arms=[kind]))
    tokens, cost = truth_tokens_and_cost(server)
    assert tokens > 0
    assert sum(arm.total_tokens for arm in report.arms) == tokens
    assert sum(arm.cost or 0.0 for arm in report.arms) == pytest.approx(cost, rel=1e-9)
    for arm in report.arms:
        assert arm.cost is not None
        assert arm.cost_per_item == pytest.approx(arm.cost / N)
        assert arm.cost_per_correct == pytest.approx(arm.cost / arm.correct)
        assert arm.input_tokens + arm.output_tokens == arm.total_tokens
        assert arm.latency_p50_s is not None
        assert arm.latency_p95_s is not None
        assert arm.latency_p50_s <= arm.latency_p95_s


def test_cost_from_prices_when_the_backend_reports_none(tmp_path: Path) -> None:
    prices = {m: {"prompt": p, "completion": 2 * p} for m, p in COST_PER_TOKEN.items()}
    with ScriptedOpenAIServer(scripts(cost=False)) as server:
        report = run_eval(items(), config(server, arms=["single"], prices=prices))
        truth = 0.0
        for request in server.requests:
            prompt = sum(len(str(m.get("content")).split()) for m in request.body["messages"])
            completion = len(_WORD_TOKENS.findall(request.response_text or ""))
            price = prices[request.model]
            truth += prompt * price["prompt"] + completion * price["completion"]
    assert sum(arm.cost or 0.0 for arm in report.arms) == pytest.approx(truth, rel=1e-9)


def test_unknown_cost_is_reported_as_unknown_not_zero() -> None:
    with ScriptedOpenAIServer(scripts(cost=False)) as server:
        report = run_eval(items()[:2], config(server, arms=["single"]))
    assert all(arm.cost is None and arm.cost_per_correct is None for arm in report.arms)
    assert report.pareto_axis == "tokens per item"


async def test_async_and_sync_paths_agree(server: ScriptedOpenAIServer) -> None:
    report = await arun_eval(items(), config(server, arms=["single", "vote"]))
    calls = len(server.requests)
    assert calls == 2 * 3 * N  # three singles and three vote calls per item
    assert {arm.name: arm.correct for arm in report.arms} == {
        "single:a": 5,
        "single:b": 4,
        "single:c": 3,
        "vote": len(expected_vote()),
    }
    with pytest.raises(RuntimeError, match="await arun_eval"):
        run_eval(items(), config(server))  # inside a running loop: refused, nothing called
    assert len(server.requests) == calls


def test_self_fusion_seats_one_model_as_often_as_the_panel_has_seats(
    server: ScriptedOpenAIServer,
) -> None:
    report = run_eval(items()[:1], config(server, arms=["self-fusion"], self_fusion="b"))
    assert [arm.name for arm in report.arms] == ["self-fusion:b"]
    assert len(server.requests_for("b")) == 3
    assert not server.requests_for("a")
    assert len(server.requests_for("j")) == 2  # the judge, then the synthesis


def test_a_failing_panelist_is_an_error_and_a_wrong_answer_not_a_crash() -> None:
    failing = {**scripts(), "b": ModelScript(status_code=400)}
    with ScriptedOpenAIServer(failing) as server:
        report = run_eval(items(), config(server, arms=["single", "fusion"]))
    b = report.arm("single:b")
    assert (b.n, b.correct, b.errors) == (N, 0, N)
    fusion = report.arm("fusion")  # a degraded panel still answers
    assert (fusion.correct, fusion.errors) == (len(CORRECT["j"]), 0)


def test_instructions_reach_every_arm_as_a_system_message(server: ScriptedOpenAIServer) -> None:
    report = run_eval(items()[:1], config(server, instructions="End with the number."))
    answering = [request for request in server.requests if request.model != "j"]
    # Every arm ran and called its models (not a pass on no request at all).
    assert {arm.n for arm in report.arms} == {1}
    assert {request.model for request in answering} == {"a", "b", "c"}
    for request in answering:
        assert request.body["messages"][0] == {
            "role": "system",
            "content": "End with the number.",
        }


def test_sample_and_limit_pick_items_repeatably() -> None:
    from langchain_fusion.eval import select_items

    first = select_items(items(), sample=4, seed=7)
    assert [i.id for i in first] == [i.id for i in select_items(items(), sample=4, seed=7)]
    assert len(first) == 4
    assert first == sorted(first, key=lambda i: int(i.id[1:]))
    assert select_items(items(), sample=4, seed=8) != first
    assert [i.id for i in select_items(items(), limit=3)] == ["q0", "q1", "q2"]
    assert len(select_items(items(), sample=4, limit=2, seed=7)) == 2


def test_vote_seats_are_the_panel_seats_even_for_a_repeated_model() -> None:
    with ScriptedOpenAIServer(scripts()) as server:
        backend = OpenAICompatibleBackend(
            base_url=server.base_url, api_key="test", seed_per_panelist=True
        )
        report = run_eval(
            items()[:1], config(server, models=["a", "a", "b"], arms=["vote"], backend=backend)
        )
        seeds = sorted(int(r.body["seed"]) for r in server.requests)
    assert seeds == [0, 1, 2]  # three seats, three seeds: the same model twice is two voters
    assert report.arm("vote").n == 1


def test_a_progress_bar_per_arm(server: ScriptedOpenAIServer) -> None:
    import io

    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    run_eval(items(), config(server, arms=["single", "vote"], progress=True, console=console))
    shown = screen.getvalue()
    for arm, correct in (("single:a", 5), ("single:b", 4), ("single:c", 3), ("vote", 4)):
        assert arm in shown
        assert f"{N}/{N}" in shown
        assert f"{correct} correct" in shown
