"""heal_json: recovering the judge's analysis from near-miss JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from langchain_fusion.contract.result import FusionAnalysis
from langchain_fusion.graph.healing import heal_json


class Verdict(BaseModel):
    """A tiny custom schema."""

    winner: str
    score: int


ANALYSIS: dict[str, Any] = {
    "consensus": ["water boils at 100 C at sea level"],
    "contradictions": [
        {
            "topic": "altitude",
            "stances": [
                {"model": "a/one", "stance": "lower"},
                {"model": "b/two", "stance": "unchanged"},
            ],
        }
    ],
    "partial_coverage": [{"models": ["a/one"], "point": "pressure cookers"}],
    "unique_insights": [{"model": "b/two", "insight": "salt raises it slightly"}],
    "blind_spots": ["impurities"],
}
ANALYSIS_TEXT = json.dumps(ANALYSIS)
SMALL_ANALYSIS: dict[str, Any] = {
    "consensus": [],
    "contradictions": [],
    "partial_coverage": [],
    "unique_insights": [],
    "blind_spots": [],
}


def test_strict_json() -> None:
    result = heal_json(ANALYSIS_TEXT, FusionAnalysis)
    assert result.problem is None
    assert result.how == "strict"
    assert result.value == FusionAnalysis.model_validate(ANALYSIS)


def test_strict_json_with_surrounding_whitespace() -> None:
    result = heal_json(f"\n\n  {ANALYSIS_TEXT}  \n", FusionAnalysis)
    assert result.how == "strict"
    assert result.value == FusionAnalysis.model_validate(ANALYSIS)


@pytest.mark.parametrize(
    "text",
    [
        f"```json\n{ANALYSIS_TEXT}\n```",
        f"```JSON\n{ANALYSIS_TEXT}\n```",
        f"```\n{ANALYSIS_TEXT}\n```",
        f"Here is the analysis:\n```json\n{json.dumps(ANALYSIS, indent=2)}\n```\nDone.",
        f"```json {ANALYSIS_TEXT}```",
    ],
    ids=["json", "JSON", "no-language", "prose-around", "one-line"],
)
def test_fenced_block(text: str) -> None:
    result = heal_json(text, FusionAnalysis)
    assert result.problem is None
    assert result.how == "fenced"
    assert result.value == FusionAnalysis.model_validate(ANALYSIS)


def test_second_fenced_block_when_first_is_not_the_analysis() -> None:
    text = f'```json\n{{"note": "draft"}}\n```\nFinal:\n```json\n{ANALYSIS_TEXT}\n```'
    result = heal_json(text, FusionAnalysis)
    assert result.how == "fenced"
    assert result.value == FusionAnalysis.model_validate(ANALYSIS)


def test_prose_before_and_after() -> None:
    text = f"Sure! Here is my comparison: {ANALYSIS_TEXT} Let me know if you need more."
    result = heal_json(text, FusionAnalysis)
    assert result.problem is None
    assert result.how == "embedded"
    assert result.value == FusionAnalysis.model_validate(ANALYSIS)


def test_prose_with_braces_before_the_json() -> None:
    text = f"Using {{the usual}} format, {{ oops: here it is }}\n{ANALYSIS_TEXT}\nThanks {{:}}"
    result = heal_json(text, FusionAnalysis)
    assert result.value == FusionAnalysis.model_validate(ANALYSIS)


def test_several_objects_only_the_largest_validates() -> None:
    text = f'First {{"draft": true}} then {ANALYSIS_TEXT} and finally {{"confidence": 0.9}}.'
    result = heal_json(text, FusionAnalysis)
    assert result.how == "embedded"
    assert result.value == FusionAnalysis.model_validate(ANALYSIS)


def test_several_valid_objects_the_largest_wins() -> None:
    text = f"Short: {json.dumps(SMALL_ANALYSIS)}\nFull: {ANALYSIS_TEXT}"
    result = heal_json(text, FusionAnalysis)
    assert result.value == FusionAnalysis.model_validate(ANALYSIS)
    text = f"Full: {ANALYSIS_TEXT}\nShort: {json.dumps(SMALL_ANALYSIS)}"
    result = heal_json(text, FusionAnalysis)
    assert result.value == FusionAnalysis.model_validate(ANALYSIS)


@pytest.mark.parametrize("prose", ["", "The result: "])
def test_nested_valid_object_inside_invalid_wrapper(prose: str) -> None:
    text = f'{prose}{{"result": {ANALYSIS_TEXT}, "model": "judge"}}'
    result = heal_json(text, FusionAnalysis)
    assert result.problem is None
    assert result.how == "embedded"
    assert result.value == FusionAnalysis.model_validate(ANALYSIS)


def test_nested_valid_object_for_custom_schema() -> None:
    text = 'Answer: {"verdict": {"winner": "a/one", "score": 7}, "reason": "clearer"}'
    result = heal_json(text, Verdict)
    assert result.value == Verdict(winner="a/one", score=7)
    assert result.how == "embedded"


def test_schema_mismatch_reports_validation_detail() -> None:
    partial = {key: value for key, value in ANALYSIS.items() if key != "blind_spots"}
    result = heal_json(json.dumps(partial), FusionAnalysis)
    assert result.value is None
    assert result.problem == "schema_mismatch"
    assert result.detail is not None
    assert "blind_spots" in result.detail
    assert "Field required" in result.detail


def test_schema_mismatch_with_wrong_type() -> None:
    bad = dict(ANALYSIS, consensus="everyone agrees")
    result = heal_json(f"Analysis: {json.dumps(bad)}", FusionAnalysis)
    assert result.value is None
    assert result.problem == "schema_mismatch"
    assert result.detail is not None
    assert "consensus" in result.detail


def test_schema_mismatch_custom_schema() -> None:
    result = heal_json('{"winner": "a/one", "score": "high"}', Verdict)
    assert result.value is None
    assert result.problem == "schema_mismatch"
    assert result.detail is not None
    assert "score" in result.detail


@pytest.mark.parametrize(
    "text",
    ["I could not compare the answers.", "consensus: yes; contradictions: none", "[1, 2", "}{"],
)
def test_prose_only_is_not_json(text: str) -> None:
    result = heal_json(text, FusionAnalysis)
    assert result.value is None
    assert result.problem == "not_json"
    assert result.detail is not None
    assert text.strip() in result.detail


@pytest.mark.parametrize("text", ["", " ", "\n\t  \n"])
def test_empty_text(text: str) -> None:
    result = heal_json(text, FusionAnalysis)
    assert result.value is None
    assert result.problem == "empty"
    assert result.how is None


@pytest.mark.parametrize("cut", [1, 20, len(ANALYSIS_TEXT) // 2, len(ANALYSIS_TEXT) - 1])
def test_truncated_json_is_not_valid(cut: int) -> None:
    result = heal_json(ANALYSIS_TEXT[:cut], FusionAnalysis)
    assert result.value is None
    assert result.problem in {"not_json", "schema_mismatch"}


def test_truncated_json_without_inner_objects_is_not_json() -> None:
    text = '{"consensus": ["a", "b"], "contradictions": [], "partial_cov'
    result = heal_json(text, FusionAnalysis)
    assert result.value is None
    assert result.problem == "not_json"


def test_truncated_fenced_json_is_not_valid() -> None:
    text = f"```json\n{ANALYSIS_TEXT[:-10]}"
    result = heal_json(text, FusionAnalysis)
    assert result.value is None


def test_braces_inside_strings() -> None:
    tricky = dict(
        SMALL_ANALYSIS,
        consensus=['use {"a": 1} as the example', "close } and open { freely", "```"],
    )
    text = f"Prose with a stray }} first. {json.dumps(tricky)} and a stray {{ after."
    result = heal_json(text, FusionAnalysis)
    assert result.value is not None
    assert result.value.consensus == tricky["consensus"]


def test_braces_inside_strings_custom_schema() -> None:
    result = heal_json('note: {"winner": "}{ weird {name}", "score": 3} end', Verdict)
    assert result.value == Verdict(winner="}{ weird {name}", score=3)


def test_extra_keys_are_ignored() -> None:
    data = dict(ANALYSIS, confidence=0.8, summary="all good")
    data["contradictions"] = [dict(ANALYSIS["contradictions"][0], severity="high")]
    result = heal_json(json.dumps(data), FusionAnalysis)
    assert result.problem is None
    assert result.value == FusionAnalysis.model_validate(ANALYSIS)
    assert "confidence" not in result.value.model_dump()


def test_custom_schema_strict_and_extra_keys() -> None:
    result = heal_json('{"winner": "b/two", "score": 9, "why": "depth"}', Verdict)
    assert result.how == "strict"
    assert result.value == Verdict(winner="b/two", score=9)


def test_custom_schema_fenced_with_prose() -> None:
    text = 'I pick:\n```json\n{"winner": "a/one", "score": 5}\n```\nbecause it is right.'
    result = heal_json(text, Verdict)
    assert result.how == "fenced"
    assert result.value == Verdict(winner="a/one", score=5)


def test_analysis_wrapped_in_a_json_array_is_recovered() -> None:
    result = heal_json(json.dumps([ANALYSIS]), FusionAnalysis)
    assert result.how == "embedded"
    assert result.value == FusionAnalysis.model_validate(ANALYSIS)


@pytest.mark.parametrize("text", ["42", '"just a string"', "null", "[1, 2, 3]"])
def test_json_that_is_not_an_object_never_validates(text: str) -> None:
    result = heal_json(text, FusionAnalysis)
    assert result.value is None
    assert result.problem in {"not_json", "schema_mismatch"}
