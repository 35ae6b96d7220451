"""Judge variants: fusion with a named judge against fusion with an anonymised one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from langchain_fusion.eval import EvalConfigError, run_eval
from langchain_fusion.eval._pipeline import supports_anonymised_judge
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from tests.test_eval_run import CORRECT, N, answers, config, items

NEEDS_ANONYMIZE = pytest.mark.xfail(strict=True, reason="needs anonymize_judge from the pipeline")
PANEL = ["alpha-model", "beta-model"]


def tagged(tag: str, correct: set[int]) -> Callable[[dict[str, Any]], str]:
    plain = answers(correct)

    def reply(body: dict[str, Any]) -> str:
        return f"[{tag}] {plain(body)}"

    return reply


def panel_scripts() -> dict[str, ModelScript]:
    return {
        "alpha-model": ModelScript(reply=tagged("alpha", CORRECT["a"])),
        "beta-model": ModelScript(reply=tagged("beta", CORRECT["b"])),
        "j": ModelScript(reply=answers(CORRECT["j"])),
    }


def judge_prompts(server: ScriptedOpenAIServer) -> list[str]:
    """The judge's requests (the ones asking for the analysis schema)."""
    return [
        json.dumps(r.body["messages"])
        for r in server.requests_for("j")
        if "response_format" in r.body
    ]


@NEEDS_ANONYMIZE
def test_named_and_anonymised_judges_are_two_arms(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(panel_scripts()) as server:
        report = run_eval(
            items(),
            config(server, models=PANEL, arms=["fusion"], judge_variants=True, out_dir=tmp_path),
        )
        prompts = judge_prompts(server)
    assert [arm.name for arm in report.arms] == ["fusion:named-judge", "fusion:anonymised-judge"]
    for arm in report.arms:
        assert (arm.n, arm.correct) == (N, len(CORRECT["j"]))
    named = [p for p in prompts if "alpha-model" in p]
    anonymised = [p for p in prompts if "alpha-model" not in p and "beta-model" not in p]
    assert len(named) == N
    assert len(anonymised) == N
    assert all("Response A" in p and "Response B" in p for p in anonymised)


@NEEDS_ANONYMIZE
def test_the_anonymised_judge_sees_a_seeded_shuffle_per_item() -> None:
    def order(seed: int) -> list[bool]:
        """Item by item: whether alpha's answer was shown to the judge before beta's."""
        with ScriptedOpenAIServer(panel_scripts()) as server:
            run_eval(
                items(),
                config(server, models=PANEL, arms=["fusion"], judge_variants=True, seed=seed),
            )
            prompts = [p for p in judge_prompts(server) if "alpha-model" not in p]
        assert len(prompts) == N
        return [p.index("[alpha]") < p.index("[beta]") for p in prompts]

    first = order(1)
    assert order(1) == first  # repeatable
    seen = first + order(2) + order(3)
    assert True in seen  # shuffled, not a fixed relabelling
    assert False in seen


@pytest.mark.skipif(supports_anonymised_judge(), reason="the pipeline has anonymize_judge")
def test_judge_variants_are_refused_before_any_call_without_the_pipeline_option() -> None:
    with ScriptedOpenAIServer(panel_scripts()) as server:
        with pytest.raises(EvalConfigError, match="anonymize_judge"):
            run_eval(items(), config(server, models=PANEL, judge_variants=True))
        assert server.requests == []


def test_variant_arms_pass_the_judge_options_with_a_seed_per_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The harness's side of the contract, whatever the pipeline does with the options."""
    from langchain_fusion import create_fusion_graph
    from langchain_fusion.eval import _pipeline

    calls: list[dict[str, Any]] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(
            {k: kwargs.pop(k) for k in ("anonymize_judge", "judge_shuffle_seed") if k in kwargs}
        )
        return create_fusion_graph(*args, **kwargs)

    monkeypatch.setattr(_pipeline, "create_fusion_graph", recording)
    monkeypatch.setattr(_pipeline, "supports_anonymised_judge", lambda: True)
    with ScriptedOpenAIServer(panel_scripts()) as server:
        report = run_eval(
            items(), config(server, models=PANEL, arms=["fusion"], judge_variants=True, seed=5)
        )
    assert [arm.name for arm in report.arms] == ["fusion:named-judge", "fusion:anonymised-judge"]
    named = [c for c in calls if c.get("anonymize_judge") is False]
    anonymised = [c for c in calls if c.get("anonymize_judge") is True]
    assert len(named) == 1  # one graph for the named judge
    assert "judge_shuffle_seed" not in named[0]
    assert len(anonymised) == N  # a graph, and a shuffle, per item
    seeds = [int(c["judge_shuffle_seed"]) for c in anonymised]
    assert len(set(seeds)) == N
    calls.clear()
    with ScriptedOpenAIServer(panel_scripts()) as server:
        run_eval(
            items(), config(server, models=PANEL, arms=["fusion"], judge_variants=True, seed=5)
        )
    again = [int(c["judge_shuffle_seed"]) for c in calls if c.get("anonymize_judge") is True]
    assert sorted(again) == sorted(seeds)  # the same --seed, the same shuffles
