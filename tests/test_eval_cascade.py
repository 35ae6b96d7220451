"""The eval's cascade arm on the known-truth data set of `bench/cascade_demo.py`: every
figure equals the truth computed by hand from the data set's table.

The table (bench/cascade_demo.py): 10 easy items (all right), 4 with a correlated error of
the cheap seats (both say X), 4 with an independent error of cheap-a, 2 where the three
dear seats share an error. The judge reports a contradiction exactly when the answers it
sees differ; the final answer is the most common answer shown (earliest seat on a tie).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from bench import cascade_demo as demo
from langchain_fusion import OpenAICompatibleBackend
from langchain_fusion.eval import EvalConfig, EvalItem, EvalReport, run_eval
from langchain_fusion.eval.arms import ArmPlanError, plan_arms
from langchain_fusion.testing import ScriptedOpenAIServer

# By hand, from the table. The cascade (first 2 seats) stops on the easy (10), correlated
# (4: wrong) and dear-wrong (2: right) items, and escalates on the 4 independent ones,
# where 4 of 5 answers are right: 10 + 0 + 4 + 2 = 16 correct, 4 escalations.
CASCADE_CORRECT, CASCADE_ESCALATED = 16, 4
# Fusion asks all five: right on easy (10), correlated (3 of 5 right: 4), independent (4);
# wrong on dear-wrong (3 of 5 wrong): 18. The vote counts the same answers: 18.
FUSION_CORRECT = VOTE_CORRECT = 18
SINGLE_CORRECT = {"cheap-a": 12, "cheap-b": 16, "dear-c": 18, "dear-d": 18, "dear-e": 18}
# Calls, counted at the server: a stopped item costs 2 panel calls, 1 analysis and 1 final
# answer; an escalated one 5 panel calls, 2 analyses and 1 final answer.
CASCADE_CALLS = {
    "cheap-a": 20,
    "cheap-b": 20,
    **{dear: CASCADE_ESCALATED for dear in demo.DEAR},
    demo.JUDGE: 20 + CASCADE_ESCALATED + 20,
}
_WORD_TOKENS = re.compile(r"\s*\S+\s*|\s+")


def items() -> list[EvalItem]:
    return [EvalItem(f"i{n}", row["question"], row["answer"]) for n, row in enumerate(demo.items())]


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(demo.scripts()) as running:
        yield running


def config(server: ScriptedOpenAIServer, **overrides: Any) -> EvalConfig:
    settings: dict[str, Any] = {
        "models": demo.PANEL,
        "judge": demo.JUDGE,
        "grader": "exact",
        "backend": OpenAICompatibleBackend(base_url=server.base_url, api_key="test"),
        "parameters": {"tools": []},
        "prices": demo.PRICES,
        "cascade_first": 2,
        "concurrency": 4,
    }
    settings.update(overrides)
    return EvalConfig(**settings)


def billed(server: ScriptedOpenAIServer) -> tuple[int, float]:
    """What the server billed: prompt words + completion word-tokens (the scripted server's
    count), each model's tokens at its price."""
    tokens, cost = 0, 0.0
    for request in server.requests:
        prompt = sum(
            len(str(message.get("content") or "").split()) for message in request.body["messages"]
        )
        completion = len(_WORD_TOKENS.findall(request.response_text or ""))
        price = demo.PRICES[request.model]
        tokens += prompt + completion
        cost += prompt * price["prompt"] + completion * price["completion"]
    return tokens, cost


def calls_by_model(server: ScriptedOpenAIServer) -> dict[str, int]:
    counted: dict[str, int] = {}
    for request in server.requests:
        counted[request.model] = counted.get(request.model, 0) + 1
    return counted


def test_the_cascade_arm_s_figures_equal_the_truth(server: ScriptedOpenAIServer) -> None:
    report = run_eval(items(), config(server, arms=["cascade"]))

    (arm,) = report.arms
    assert arm.name == "cascade:2"
    assert arm.kind == "cascade"
    assert arm.n == 20
    assert arm.correct == CASCADE_CORRECT
    assert arm.accuracy == CASCADE_CORRECT / 20
    assert arm.escalated == CASCADE_ESCALATED
    assert arm.escalation_rate == CASCADE_ESCALATED / 20
    assert calls_by_model(server) == CASCADE_CALLS
    tokens, cost = billed(server)
    assert arm.total_tokens == tokens
    assert arm.cost == pytest.approx(cost, rel=1e-9)
    assert arm.cost_per_correct == pytest.approx(cost / CASCADE_CORRECT, rel=1e-9)
    # As the report says it: the table's row, and results.json read back.
    lines = report.markdown().splitlines()
    row = next(line for line in lines if line.startswith("| cascade:2 |"))
    assert row.endswith("| 4/20 (20%) |")
    again = EvalReport.model_validate_json(report.model_dump_json())
    assert again.arm("cascade:2").escalation_rate == 0.2


def test_fusion_on_the_same_data_asks_every_seat_every_time(
    server: ScriptedOpenAIServer,
) -> None:
    report = run_eval(items(), config(server, arms=["fusion"]))

    arm = report.arm("fusion")
    assert arm.correct == FUSION_CORRECT
    assert arm.escalated is None  # not a cascade
    assert calls_by_model(server) == {**{m: 20 for m in demo.PANEL}, demo.JUDGE: 40}
    tokens, cost = billed(server)
    assert arm.total_tokens == tokens
    assert arm.cost == pytest.approx(cost, rel=1e-9)


def test_the_vote_stands_next_to_it(server: ScriptedOpenAIServer) -> None:
    report: EvalReport = run_eval(items(), config(server, arms=["vote"], concurrency=8))

    assert report.arm("vote").correct == VOTE_CORRECT
    assert calls_by_model(server) == {m: 20 for m in demo.PANEL}  # no judge, no synthesis


def test_by_default_the_cascade_arm_runs_only_when_asked_for() -> None:
    plan: dict[str, Any] = {"models": demo.PANEL, "judge": demo.JUDGE, "self_fusion": None}
    common: dict[str, Any] = {"judge_variants": False, "votable": True}
    names = [a.name for a in plan_arms(kinds=None, **plan, **common)]
    assert not any(name.startswith("cascade") for name in names)
    with_first = [a.name for a in plan_arms(kinds=None, cascade_first=3, **plan, **common)]
    assert with_first[-1] == "cascade:3"
    ruled = plan_arms(kinds=["cascade"], cascade_rule="exact", **plan, **common)
    assert [a.name for a in ruled] == ["cascade:2:exact"]
    with pytest.raises(ArmPlanError, match="no seat would be left"):
        plan_arms(kinds=["cascade"], cascade_first=5, **plan, **common)
    with pytest.raises(ArmPlanError, match="rule"):
        plan_arms(kinds=["cascade"], cascade_rule="fuzzy", **plan, **common)


def test_a_stored_fusion_arm_keeps_its_fingerprint() -> None:
    """Results stored before the cascade existed still resume: an arm without a cascade
    hashes its fields as before (the hash of the fields it had then)."""
    import hashlib
    import json

    from langchain_fusion.eval.arms import ArmSpec

    before: dict[str, Any] = {"name": "fusion", "kind": "fusion", "panel": ["a", "b"]}
    before.update(judge="j", anonymize_judge=None)
    text = json.dumps([before, {"seed": 1}], sort_keys=True, default=str)
    expected = hashlib.sha256(text.encode()).hexdigest()[:16]
    assert ArmSpec("fusion", "fusion", ("a", "b"), "j").fingerprint({"seed": 1}) == expected
    cascading = ArmSpec("c", "cascade", ("a", "b", "c"), "j", cascade=(("first", 2),))
    assert cascading.fingerprint({}) != ArmSpec("c", "cascade", ("a", "b", "c"), "j").fingerprint(
        {}
    )


def test_the_run_s_worst_case_counts_the_cascade_s_second_analysis() -> None:
    from langchain_core.messages import HumanMessage

    from langchain_fusion import FusionParameters
    from langchain_fusion.eval.budget import estimate_run

    plan: dict[str, Any] = {"models": demo.PANEL, "judge": demo.JUDGE, "self_fusion": None}
    common: dict[str, Any] = {"judge_variants": False, "votable": True}
    fusion, cascade, exact = (
        plan_arms(kinds=["fusion"], **plan, **common)[0],
        plan_arms(kinds=["cascade"], **plan, **common)[0],
        plan_arms(kinds=["cascade"], cascade_rule="exact", **plan, **common)[0],
    )
    work = items()[:3]

    def calls(arm: Any) -> int:
        return estimate_run(
            [(item, arm) for item in work],
            messages_for=lambda item: [HumanMessage(item.question)],
            parameters=FusionParameters(tools=[], max_completion_tokens=50),
            prices={},
            grader_model=None,
        ).calls

    assert calls(cascade) == calls(fusion) + 2 * 3  # one more analysis and its retry, per item
    assert calls(exact) == calls(fusion)  # a matching rule asks the judge once


def test_each_panelist_alone_gets_what_the_table_says() -> None:
    """The single arms' rows of the report in docs/eval.md, from the data set's table."""
    for model, correct in SINGLE_CORRECT.items():
        right = [demo.answer(model, row) == row["answer"] for row in demo.items()]
        assert sum(right) == correct, model
