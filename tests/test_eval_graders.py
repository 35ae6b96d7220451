"""Graders, the statistics behind the report, and the LLM grader on the scripted server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from langchain_fusion import OpenAICompatibleBackend
from langchain_fusion.eval import (
    DataError,
    EvalItem,
    GraderError,
    default_grader,
    load_jsonl,
    make_grader,
    stats,
)
from langchain_fusion.eval.graders import choice_letter, last_number
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer


def grade(name: str, reference: Any, answer: str, **fields: Any) -> bool:
    item = EvalItem("i", "q", reference, fields)
    return asyncio.run(make_grader(name).grade(item, answer)).correct


def test_numeric_grader_reads_the_last_number() -> None:
    assert last_number("First 3, then 1,234.5 apples") == 1234.5
    assert last_number("It costs $-7.") == -7
    assert last_number("v1.2 and x9") is None
    assert grade("numeric", 42, "Step 1: 40 + 2. The answer is 42.")
    assert grade("numeric", "1,000", "So 1000")
    assert not grade("numeric", 42, "42 is wrong, it is 43")
    assert not grade("numeric", 42, "no idea")
    assert grade("numeric", 0.1, "0.1000000001")


def test_exact_normalised_choice_and_regex() -> None:
    assert grade("exact", "Paris", "  Paris\n")
    assert not grade("exact", "Paris", "paris")
    assert grade("normalised", "The Eiffel Tower", "eiffel tower!")
    assert grade("normalized", "Paris", "Let me think.\nFinal answer: Paris.")
    assert not grade("normalised", "Paris", "Paris or Lyon")
    assert choice_letter("I think the answer is (C), not B.") == "C"
    assert choice_letter("Options A and B fail; so D") == "D"
    assert grade("choice", "(b)", "Answer: B")
    assert not grade("choice", "B", "The answer is C")
    assert grade("regex", r"(?i)\bparis\b", "It is PARIS.")
    assert grade("regex", "ignored", "x = 42", pattern=r"x\s*=\s*42")
    assert not grade("regex", "[unclosed", "anything")


def test_grader_names_defaults_and_votes() -> None:
    with pytest.raises(GraderError, match="unknown grader 'fuzzy'"):
        make_grader("fuzzy")
    with pytest.raises(GraderError, match="needs a model"):
        make_grader("llm")
    numbers = [EvalItem("1", "q", 3), EvalItem("2", "q", "4.5")]
    words = [EvalItem("1", "q", 3), EvalItem("2", "q", "four")]
    assert default_grader(numbers) == "numeric"
    assert default_grader(words) == "normalised"
    assert make_grader("numeric").key("so 2.0") == "2"
    assert make_grader("choice").key("(a)") == "A"
    assert not make_grader("regex").votable
    assert not make_grader("code").votable


def test_jsonl_keeps_extra_fields_and_refuses_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        json.dumps({"question": "q1", "answer": 1, "topic": "t"})
        + "\n\n"
        + json.dumps({"id": "x", "question": "q2", "answer": "b"})
        + "\n"
        + json.dumps({"question": "q1", "answer": 1})
        + "\n"
    )
    items = load_jsonl(path)
    assert items[0].fields["topic"] == "t"
    assert items[1].id == "x"
    assert items[2].id == items[0].id + "#2"  # the same question twice stays two items
    assert load_jsonl(path)[0].id == items[0].id  # stable across reads
    path.write_text("not json\n")
    with pytest.raises(DataError, match=r"d.jsonl:1: not JSON"):
        load_jsonl(path)
    with pytest.raises(DataError, match="not found"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_bootstrap_interval_contains_the_accuracy_and_narrows_with_n() -> None:
    small = [1.0] * 6 + [0.0] * 4
    large = small * 20
    low, high = stats.bootstrap_interval(small, seed=1)
    assert low <= 0.6 <= high
    low_large, high_large = stats.bootstrap_interval(large, seed=1)
    assert low_large <= 0.6 <= high_large
    assert high_large - low_large < high - low
    assert stats.bootstrap_interval([1.0] * 5) == (1.0, 1.0)
    assert stats.bootstrap_interval(small, seed=3) == stats.bootstrap_interval(small, seed=3)


def test_paired_comparison_mcnemar_percentiles_and_front() -> None:
    arm = [True, True, False, True, False]
    base = [True, False, True, False, False]
    result = stats.paired(arm, base)
    assert (result["won"], result["lost"], result["tied"], result["n"]) == (2, 1, 2, 5)
    assert result["difference"] == pytest.approx(0.2)
    assert stats.mcnemar_p(0, 0) == 1.0
    assert stats.mcnemar_p(10, 0) == pytest.approx(2 / 1024)
    assert stats.percentile([1, 2, 3, 4], 50) == 2.5
    assert stats.percentile([5.0], 95) == 5.0
    assert stats.percentile([], 50) is None
    front = stats.pareto_front(
        {"cheap": (1, 0.5), "good": (5, 0.9), "bad": (6, 0.8), "same": (1, 0.4)}
    )
    assert front == ["cheap", "good"]


def test_llm_grader_asks_the_named_model_and_counts_its_tokens() -> None:
    def verdict(body: dict[str, Any]) -> dict[str, Any]:
        prompt = json.dumps(body["messages"])
        return {"reasoning": "compared", "score": "Paris" in prompt and "Lyon" not in prompt}

    with ScriptedOpenAIServer(
        {"grader-m": ModelScript(json_reply=verdict, cost_per_token=1e-6)}
    ) as server:
        backend = OpenAICompatibleBackend(base_url=server.base_url, api_key="test")
        grader = make_grader("llm", llm_model="grader-m", backend=backend)
        item = EvalItem("i", "Capital of France?", "Paris")

        async def both() -> tuple[Any, Any]:
            # One event loop: the backend's pooled async client belongs to it.
            return await grader.grade(item, "It is Paris."), await grader.grade(item, "It is Lyon.")

        right, wrong = asyncio.run(both())
        assert len(server.requests_for("grader-m")) == 2
        request = server.requests_for("grader-m")[0]
        assert "Capital of France?" in json.dumps(request.body["messages"])
    assert right.correct
    assert not wrong.correct
    assert right.usage.total_tokens > 0
    assert right.usage.cost == pytest.approx(right.usage.total_tokens * 1e-6)
