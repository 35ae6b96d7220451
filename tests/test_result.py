"""The result contract: FusionResult's shape, the analysis schema and its bounds, usage, errors."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from langchain_fusion.contract.errors import run_failure_reason, status_code_of
from langchain_fusion.contract.result import (
    MAX_ITEMS,
    MAX_LABEL,
    MAX_STANCES,
    MAX_TEXT,
    AnalysisLimits,
    FailedModel,
    FusionAnalysis,
    FusionResult,
    FusionUsage,
    PanelResponse,
    Source,
    TokenUsage,
)

CONTRACT_FILE = Path(__file__).resolve().parents[1] / "docs" / "contract.md"

# The example of the contract's "The result" section, verbatim.
CONTRACT_EXAMPLE: dict[str, Any] = {
    "status": "ok",
    "analysis": {
        "consensus": ["..."],
        "contradictions": [{"topic": "...", "stances": [{"model": "...", "stance": "..."}]}],
        "partial_coverage": [{"models": ["..."], "point": "..."}],
        "unique_insights": [{"model": "...", "insight": "..."}],
        "blind_spots": ["..."],
    },
    "responses": [{"model": "...", "content": "..."}],
    "failed_models": [{"model": "...", "error": "...", "status_code": 429}],
    "sources": [{"title": "...", "url": "..."}],
    "failure_reason": None,
}
CONTRACT_KEYS = {"status", "analysis", "responses", "failed_models", "sources", "failure_reason"}
ANALYSIS_KEYS = [
    "consensus",
    "contradictions",
    "partial_coverage",
    "unique_insights",
    "blind_spots",
]


def analysis_data(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(CONTRACT_EXAMPLE["analysis"])
    data.update(changes)
    return data


def full_result() -> FusionResult:
    return FusionResult(
        analysis=FusionAnalysis.model_validate(analysis_data()),
        responses=[
            PanelResponse(model="a/one", content="answer one"),
            PanelResponse(model="a/one", content="answer two"),
        ],
        failed_models=[FailedModel(model="b/two", error="HTTP 429", status_code=429)],
        sources=[Source(url="https://example.org", title="Example")],
        usage=FusionUsage(
            panel=TokenUsage(input_tokens=10, output_tokens=20, total_tokens=30, cost=0.01),
            judge=TokenUsage(input_tokens=5, output_tokens=5, total_tokens=10),
        ),
    )


# --- FusionResult's contract shape ----------------------------------------------------


def test_dump_has_exactly_the_contract_keys_plus_usage() -> None:
    dump = full_result().model_dump(mode="json")
    assert set(dump) == CONTRACT_KEYS | {"usage"}
    assert dump["status"] == "ok"
    assert dump["failure_reason"] is None
    assert set(dump["analysis"]) == set(ANALYSIS_KEYS)
    assert dump["failed_models"] == [{"model": "b/two", "error": "HTTP 429", "status_code": 429}]
    assert dump["sources"] == [{"url": "https://example.org", "title": "Example"}]


def test_dump_omits_analysis_when_none() -> None:
    result = full_result().model_copy(update={"analysis": None})
    dump = result.model_dump(mode="json")
    assert "analysis" not in dump
    assert set(dump) == (CONTRACT_KEYS - {"analysis"}) | {"usage"}
    # The raw answers are still there for the outer model.
    assert [r["content"] for r in dump["responses"]] == ["answer one", "answer two"]


def test_dump_omits_failed_models_when_empty() -> None:
    dump = FusionResult(responses=[PanelResponse(model="a", content="b")]).model_dump(mode="json")
    assert "failed_models" not in dump
    assert "analysis" not in dump
    assert dump["failure_reason"] is None
    assert "failure_reason" in dump


def test_failed_model_without_status_code_keeps_the_key() -> None:
    result = FusionResult(failed_models=[FailedModel(model="m", error="timeout")])
    assert result.model_dump(mode="json")["failed_models"] == [
        {"model": "m", "error": "timeout", "status_code": None}
    ]


def test_failure_detail_only_when_set() -> None:
    assert "failure_detail" not in FusionResult().model_dump(mode="json")
    failed = FusionResult(
        status="error", failure_reason="rate_limited", failure_detail="429 Too Many Requests"
    )
    dump = failed.model_dump(mode="json")
    assert dump["status"] == "error"
    assert dump["failure_reason"] == "rate_limited"
    assert dump["failure_detail"] == "429 Too Many Requests"


def test_unknown_failure_reason_refused() -> None:
    with pytest.raises(ValidationError):
        FusionResult(failure_reason="judge_exploded")  # type: ignore[arg-type]


def test_dump_json_matches_dump() -> None:
    result = full_result()
    assert json.loads(result.model_dump_json()) == result.model_dump(mode="json")


@pytest.mark.parametrize("analysis", [True, False])
def test_round_trip(analysis: bool) -> None:
    result = full_result()
    if not analysis:
        result = result.model_copy(update={"analysis": None, "failed_models": []})
    dump = result.model_dump(mode="json")
    again = FusionResult.model_validate(dump)
    assert again == result
    assert again.model_dump(mode="json") == dump
    assert FusionResult.model_validate_json(result.model_dump_json()) == result


def test_contract_example_validates() -> None:
    result = FusionResult.model_validate(CONTRACT_EXAMPLE)
    assert result.analysis is not None
    assert result.failed_models[0].status_code == 429
    assert result.sources == [Source(url="...", title="...")]
    dump = result.model_dump(mode="json")
    dump.pop("usage")
    assert dump == CONTRACT_EXAMPLE


def test_contract_example_matches_the_contract_file() -> None:
    text = CONTRACT_FILE.read_text(encoding="utf-8")
    section = text[text.index("## The result") :]
    match = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert match is not None
    example = json.loads(match.group(1))
    assert example == CONTRACT_EXAMPLE
    result = FusionResult.model_validate(example)
    assert result.analysis is not None
    assert set(result.analysis.model_dump()) == set(ANALYSIS_KEYS)


# --- FusionAnalysis -------------------------------------------------------------------


@pytest.mark.parametrize("missing", ANALYSIS_KEYS)
def test_analysis_requires_all_five_keys(missing: str) -> None:
    data = analysis_data()
    del data[missing]
    with pytest.raises(ValidationError, match=missing):
        FusionAnalysis.model_validate(data)


def test_analysis_keys_may_be_empty_lists() -> None:
    analysis = FusionAnalysis.model_validate({key: [] for key in ANALYSIS_KEYS})
    assert analysis.model_dump() == {key: [] for key in ANALYSIS_KEYS}


@pytest.mark.parametrize("key", ["consensus", "blind_spots"])
def test_analysis_list_bound(key: str) -> None:
    FusionAnalysis.model_validate(analysis_data(**{key: ["x"] * MAX_ITEMS}))
    with pytest.raises(ValidationError, match=key):
        FusionAnalysis.model_validate(analysis_data(**{key: ["x"] * (MAX_ITEMS + 1)}))


@pytest.mark.parametrize(
    ("key", "item"),
    [
        ("contradictions", {"topic": "t", "stances": []}),
        ("partial_coverage", {"models": [], "point": "p"}),
        ("unique_insights", {"model": "m", "insight": "i"}),
    ],
)
def test_analysis_object_list_bound(key: str, item: dict[str, Any]) -> None:
    FusionAnalysis.model_validate(analysis_data(**{key: [item] * MAX_ITEMS}))
    with pytest.raises(ValidationError, match=key):
        FusionAnalysis.model_validate(analysis_data(**{key: [item] * (MAX_ITEMS + 1)}))


def test_analysis_text_bound() -> None:
    FusionAnalysis.model_validate(analysis_data(consensus=["x" * MAX_TEXT]))
    with pytest.raises(ValidationError, match="consensus"):
        FusionAnalysis.model_validate(analysis_data(consensus=["x" * (MAX_TEXT + 1)]))
    with pytest.raises(ValidationError, match="insight"):
        FusionAnalysis.model_validate(
            analysis_data(unique_insights=[{"model": "m", "insight": "x" * (MAX_TEXT + 1)}])
        )


def test_analysis_label_and_stance_bounds() -> None:
    long_label = "m" * (MAX_LABEL + 1)
    with pytest.raises(ValidationError):
        FusionAnalysis.model_validate(
            analysis_data(unique_insights=[{"model": long_label, "insight": "i"}])
        )
    with pytest.raises(ValidationError):
        FusionAnalysis.model_validate(
            analysis_data(partial_coverage=[{"models": [long_label], "point": "p"}])
        )
    stances = [{"model": "m", "stance": "s"}] * (MAX_STANCES + 1)
    with pytest.raises(ValidationError, match="stances"):
        FusionAnalysis.model_validate(
            analysis_data(contradictions=[{"topic": "t", "stances": stances}])
        )


def test_analysis_ignores_extra_keys() -> None:
    analysis = FusionAnalysis.model_validate(analysis_data(confidence=0.9))
    assert set(analysis.model_dump()) == set(ANALYSIS_KEYS)


def _walk(schema: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every array, string and object node of `schema`, with `$ref`s resolved."""
    defs = schema.get("$defs", {})
    found: dict[str, list[dict[str, Any]]] = {"array": [], "string": [], "object": []}
    seen_refs: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        if "$ref" in node:
            name = node["$ref"].removeprefix("#/$defs/")
            if name not in seen_refs:
                seen_refs.add(name)
                visit(defs[name])
            return
        kind = node.get("type")
        if kind in found:
            found[kind].append(node)
        for key in ("items", "anyOf", "allOf", "oneOf", "prefixItems"):
            if key in node:
                visit(node[key])
        for child in node.get("properties", {}).values():
            visit(child)
        if isinstance(node.get("additionalProperties"), dict):
            visit(node["additionalProperties"])

    visit({key: value for key, value in schema.items() if key != "$defs"})
    assert seen_refs == set(defs), "every definition is reachable"
    return found


def test_analysis_schema_is_bounded_and_closed() -> None:
    found = _walk(FusionAnalysis.model_json_schema())
    # 5 top-level lists + stances + models; 5 objects (analysis + 4 item types).
    assert len(found["array"]) == 7
    assert len(found["object"]) == 5
    assert len(found["string"]) >= 8
    for node in found["array"]:
        assert node.get("maxItems") in {MAX_ITEMS, MAX_STANCES}, node
    for node in found["string"]:
        assert node.get("maxLength") in {MAX_TEXT, MAX_LABEL}, node
    for node in found["object"]:
        assert node.get("additionalProperties") is False, node
        assert set(node["required"]) == set(node["properties"]), node


def test_analysis_limits_lower_every_bound_and_leave_the_class_alone() -> None:
    before = FusionAnalysis.model_json_schema()
    lowered = AnalysisLimits(2, 50).json_schema()
    found = _walk(lowered)
    assert found["array"]
    assert found["string"]
    for node in found["array"]:
        assert node["maxItems"] == 2
    for node in found["string"]:
        assert node["maxLength"] == 50
    for node in found["object"]:
        assert node["additionalProperties"] is False
    assert FusionAnalysis.model_json_schema() == before
    assert FusionAnalysis.model_json_schema()["properties"]["consensus"]["maxItems"] == MAX_ITEMS
    # A second call is not affected by the first.
    assert AnalysisLimits(3, 60).json_schema()["properties"]["consensus"]["maxItems"] == 3


def test_analysis_limits_never_raise_a_bound() -> None:
    assert AnalysisLimits(100, 10_000).json_schema() == FusionAnalysis.model_json_schema()
    assert AnalysisLimits().json_schema() == FusionAnalysis.model_json_schema()
    labels = _walk(AnalysisLimits(8, 300).json_schema())["string"]
    assert {node["maxLength"] for node in labels} == {300, MAX_LABEL}


# --- usage ----------------------------------------------------------------------------


def test_token_usage_addition_sums_tokens() -> None:
    total = TokenUsage(input_tokens=1, output_tokens=2, total_tokens=3) + TokenUsage(
        input_tokens=10, output_tokens=20, total_tokens=30
    )
    assert (total.input_tokens, total.output_tokens, total.total_tokens) == (11, 22, 33)


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (None, None, None),
        (None, 0.5, 0.5),
        (0.5, None, 0.5),
        (0.25, 0.5, 0.75),
        (0.0, None, 0.0),
    ],
)
def test_token_usage_cost_addition(
    left: float | None, right: float | None, expected: float | None
) -> None:
    cost = (TokenUsage(cost=left) + TokenUsage(cost=right)).cost
    if expected is None:
        assert cost is None
    else:
        assert cost == pytest.approx(expected)


def test_token_usage_addition_does_not_mutate() -> None:
    a = TokenUsage(input_tokens=1, cost=0.1)
    b = TokenUsage(input_tokens=2, cost=0.2)
    _ = a + b
    assert a == TokenUsage(input_tokens=1, cost=0.1)
    assert b == TokenUsage(input_tokens=2, cost=0.2)


def test_fusion_usage_total_sums_the_stages() -> None:
    usage = FusionUsage(
        panel=TokenUsage(input_tokens=100, output_tokens=50, total_tokens=150, cost=0.3),
        judge=TokenUsage(input_tokens=40, output_tokens=10, total_tokens=50),
        synthesis=TokenUsage(input_tokens=7, output_tokens=3, total_tokens=10, cost=0.2),
        by_model={"a/one": TokenUsage(input_tokens=999)},
    )
    total = usage.total
    assert (total.input_tokens, total.output_tokens, total.total_tokens) == (147, 63, 210)
    assert total.cost == pytest.approx(0.5)
    dump = usage.model_dump()
    assert dump["total"] == total.model_dump()
    assert set(dump) == {"panel", "judge", "synthesis", "by_model", "total"}


def test_fusion_usage_total_without_costs() -> None:
    assert FusionUsage().total == TokenUsage()
    assert FusionUsage().model_dump()["total"]["cost"] is None


def test_result_dump_carries_usage_total() -> None:
    dump = full_result().model_dump(mode="json")
    assert dump["usage"]["total"]["total_tokens"] == 40
    assert dump["usage"]["total"]["cost"] == pytest.approx(0.01)


# --- errors ---------------------------------------------------------------------------


def failures(*codes: int | None) -> list[FailedModel]:
    return [FailedModel(model=f"m{i}", error="e", status_code=c) for i, c in enumerate(codes)]


@pytest.mark.parametrize(
    ("codes", "reason"),
    [
        ((402,), "insufficient_credits"),
        ((402, 402, 402), "insufficient_credits"),
        ((429, 429), "rate_limited"),
        ((404, 404), "invalid_model"),
        ((402, 429), "all_panels_failed"),
        ((429, 404), "all_panels_failed"),
        ((429, None), "all_panels_failed"),
        ((500,), "all_panels_failed"),
        ((500, 500), "all_panels_failed"),
        ((None,), "all_panels_failed"),
    ],
)
def test_run_failure_reason(codes: tuple[int | None, ...], reason: str) -> None:
    assert run_failure_reason(failures(*codes)) == reason


class _WithStatus(Exception):
    def __init__(self, status_code: Any) -> None:
        super().__init__("with status")
        self.status_code = status_code


class _Response:
    def __init__(self, status_code: Any) -> None:
        self.status_code = status_code


class _WithResponse(Exception):
    def __init__(self, status_code: Any) -> None:
        super().__init__("with response")
        self.response = _Response(status_code)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (_WithStatus(429), 429),
        (_WithStatus(402), 402),
        (_WithResponse(404), 404),
        (_WithResponse(503), 503),
        (ValueError("plain"), None),
        (_WithStatus("429"), None),
        (_WithStatus(None), None),
        (_WithResponse(None), None),
    ],
)
def test_status_code_of(error: BaseException, code: int | None) -> None:
    assert status_code_of(error) == code
