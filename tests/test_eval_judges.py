"""Judge variants: fusion with a named judge against fusion with an anonymised one."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from langchain_fusion.eval import run_eval
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from tests.test_eval_run import CORRECT, N, answers, config, items

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


def test_the_anonymised_judge_sees_a_seeded_shuffle_per_item() -> None:
    def order(seed: int) -> dict[str, bool]:
        """Item by item: whether alpha's answer was shown to the judge before beta's (keyed
        by the item's question: items run concurrently, in no fixed order)."""
        with ScriptedOpenAIServer(panel_scripts()) as server:
            run_eval(
                items(),
                config(server, models=PANEL, arms=["fusion"], judge_variants=True, seed=seed),
            )
            prompts = [p for p in judge_prompts(server) if "alpha-model" not in p]
        assert len(prompts) == N
        return {
            re.search(r"Q\d+", p).group(0): p.index("[alpha]") < p.index("[beta]")  # type: ignore[union-attr]
            for p in prompts
        }

    first = order(1)
    assert order(1) == first  # repeatable
    seen = [*first.values(), *order(2).values(), *order(3).values()]
    assert True in seen  # shuffled, not a fixed relabelling
    assert False in seen


def test_variant_arms_pass_the_judge_options_with_the_run_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The harness's side: one graph per arm, the anonymised one with the run's seed (the
    pipeline varies the order per conversation)."""
    from langchain_fusion import create_fusion_graph
    from langchain_fusion.eval import _pipeline

    calls: list[dict[str, Any]] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(
            {k: kwargs[k] for k in ("anonymize_judge", "judge_shuffle_seed") if k in kwargs}
        )
        return create_fusion_graph(*args, **kwargs)

    monkeypatch.setattr(_pipeline, "create_fusion_graph", recording)
    with ScriptedOpenAIServer(panel_scripts()) as server:
        report = run_eval(
            items(), config(server, models=PANEL, arms=["fusion"], judge_variants=True, seed=5)
        )
    assert [arm.name for arm in report.arms] == ["fusion:named-judge", "fusion:anonymised-judge"]
    assert calls == [{"anonymize_judge": False}, {"anonymize_judge": True, "judge_shuffle_seed": 5}]
