"""FusionParameters: ranges, defaults, error messages, presets and `from_json`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from langchain_fusion.contract import presets as presets_module
from langchain_fusion.contract.parameters import (
    FusionParameterError,
    FusionParameters,
    ReasoningConfig,
    ToolSpec,
)
from langchain_fusion.contract.presets import PRESETS, Preset, get_preset, register_preset

CONTRACT_DEFAULT_PANEL = [
    "~anthropic/claude-opus-latest",
    "~openai/gpt-latest",
    "~google/gemini-pro-latest",
]
SEED_PANEL = ["~google/gemini-flash-latest", "deepseek/deepseek-v3.2", "~moonshotai/kimi-latest"]
SEED_JUDGE = "~anthropic/claude-opus-latest"
SEED_TOOL: dict[str, Any] = {
    "type": "openrouter:fusion",
    "parameters": {"analysis_models": SEED_PANEL, "model": SEED_JUDGE},
}
SEED_TOOL_TEXT = (
    '{"type": "openrouter:fusion", "parameters": {"analysis_models": '
    '["~google/gemini-flash-latest", "deepseek/deepseek-v3.2", "~moonshotai/kimi-latest"], '
    '"model": "~anthropic/claude-opus-latest"}}'
)


def problems_of(**data: Any) -> list[str]:
    with pytest.raises(FusionParameterError) as info:
        FusionParameters(**data)
    return info.value.problems


@pytest.fixture
def restore_presets() -> Iterator[None]:
    saved = dict(presets_module._PRESETS)
    yield
    presets_module._PRESETS.clear()
    presets_module._PRESETS.update(saved)


# --- defaults -------------------------------------------------------------------------


def test_defaults_follow_the_contract() -> None:
    params = FusionParameters()
    assert params.preset == "general-high"
    assert params.panel == CONTRACT_DEFAULT_PANEL
    assert params.max_tool_calls == 4  # the hosted default since 2026-08-07
    assert params.analysis_models is None
    assert params.model is None
    assert params.temperature is None
    assert params.max_completion_tokens == 16_000  # the hosted default
    assert params.reasoning is None
    assert params.tools is None


def test_tools_none_means_web_search_and_web_fetch() -> None:
    params = FusionParameters(tools=None)
    assert [tool.type for tool in params.effective_tools] == [
        "openrouter:web_search",
        "openrouter:web_fetch",
    ]


def test_empty_tools_turns_tools_off() -> None:
    params = FusionParameters(tools=[])
    assert params.tools == []
    assert params.effective_tools == ()


def test_explicit_tools_replace_the_defaults() -> None:
    params = FusionParameters(tools=[{"type": "openrouter:web_search", "parameters": {"k": 3}}])
    assert params.effective_tools == (ToolSpec(type="openrouter:web_search", parameters={"k": 3}),)


# --- analysis_models ------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 8])
def test_analysis_models_in_range(count: int) -> None:
    models = [f"vendor/model-{i}" for i in range(count)]
    params = FusionParameters(analysis_models=models)
    assert params.panel == models


@pytest.mark.parametrize("count", [0, 9])
def test_analysis_models_out_of_range(count: int) -> None:
    problems = problems_of(analysis_models=[f"vendor/model-{i}" for i in range(count)])
    assert len(problems) == 1
    assert problems[0].startswith("analysis_models")
    assert "1 to 8" in problems[0]


def test_analysis_models_may_repeat() -> None:
    params = FusionParameters(analysis_models=["a/b", "a/b", "a/b"])
    assert params.panel == ["a/b", "a/b", "a/b"]


def test_model_slug_whitespace_is_stripped_and_inner_spaces_refused() -> None:
    assert FusionParameters(analysis_models=["  a/b  "]).panel == ["a/b"]
    problems = problems_of(analysis_models=["a/b", "not a slug"])
    assert problems[0].startswith("analysis_models.1")
    problems = problems_of(model="has space")
    assert problems[0].startswith("model")


def test_panel_is_a_copy() -> None:
    params = FusionParameters(analysis_models=["a/b"])
    params.panel.append("c/d")
    assert params.panel == ["a/b"]
    default = FusionParameters()
    default.panel.append("c/d")
    assert default.panel == CONTRACT_DEFAULT_PANEL


# --- max_tool_calls -------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 8, 16])
def test_max_tool_calls_in_range(value: int) -> None:
    assert FusionParameters(max_tool_calls=value).max_tool_calls == value


@pytest.mark.parametrize("value", [0, 17, -1, True, 8.5, 8.0, "8", None])
def test_max_tool_calls_refused(value: Any) -> None:
    problems = problems_of(max_tool_calls=value)
    assert len(problems) == 1
    assert problems[0].startswith("max_tool_calls")
    assert "1 to 16" in problems[0]


# --- temperature ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.0, 1.5, 2, 2.0])
def test_temperature_in_range(value: float) -> None:
    assert FusionParameters(temperature=value).temperature == value


@pytest.mark.parametrize("value", [-0.1, 2.01, 3, True, "1.0"])
def test_temperature_refused(value: Any) -> None:
    problems = problems_of(temperature=value)
    assert len(problems) == 1
    assert problems[0].startswith("temperature")
    assert "0 to 2" in problems[0]


# --- max_completion_tokens ------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 16000])
def test_max_completion_tokens_in_range(value: int) -> None:
    assert FusionParameters(max_completion_tokens=value).max_completion_tokens == value


@pytest.mark.parametrize("value", [0, -5, 1.5, "100"])
def test_max_completion_tokens_refused(value: Any) -> None:
    problems = problems_of(max_completion_tokens=value)
    assert len(problems) == 1
    assert problems[0].startswith("max_completion_tokens")
    assert "positive integer" in problems[0]


# --- reasoning ------------------------------------------------------------------------


@pytest.mark.parametrize("effort", ["max", "xhigh", "high", "medium", "low", "minimal", "none"])
def test_reasoning_effort_allowed(effort: str) -> None:
    params = FusionParameters(reasoning={"effort": effort})
    assert params.reasoning == ReasoningConfig(effort=effort)  # type: ignore[arg-type]


def test_reasoning_effort_refused() -> None:
    problems = problems_of(reasoning={"effort": "huge"})
    assert len(problems) == 1
    assert problems[0].startswith("reasoning.effort")
    assert "max, xhigh, high, medium, low, minimal, none" in problems[0]


@pytest.mark.parametrize("value", [1, 4096])
def test_reasoning_max_tokens_in_range(value: int) -> None:
    params = FusionParameters(reasoning={"max_tokens": value})
    assert params.reasoning is not None
    assert params.reasoning.max_tokens == value
    assert params.reasoning.effort is None


@pytest.mark.parametrize("value", [0, -1, "5", 2.5])
def test_reasoning_max_tokens_refused(value: Any) -> None:
    problems = problems_of(reasoning={"max_tokens": value})
    assert len(problems) == 1
    assert problems[0].startswith("reasoning.max_tokens")
    assert "positive integer" in problems[0]


def test_reasoning_unknown_field_refused() -> None:
    problems = problems_of(reasoning={"effort": "high", "budget": 10})
    assert len(problems) == 1
    assert problems[0].startswith("reasoning.budget")
    assert "unknown field" in problems[0]
    assert "effort, max_tokens" in problems[0]


# --- tools ----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 8])
def test_tools_up_to_eight(count: int) -> None:
    tools = [{"type": f"tool:{i}"} for i in range(count)]
    params = FusionParameters(tools=tools)
    assert [tool.type for tool in params.effective_tools] == [t["type"] for t in tools]


def test_nine_tools_refused() -> None:
    problems = problems_of(tools=[{"type": f"tool:{i}"} for i in range(9)])
    assert len(problems) == 1
    assert problems[0].startswith("tools")
    assert "at most 8" in problems[0]


def test_tool_unknown_field_refused() -> None:
    problems = problems_of(tools=[{"type": "openrouter:web_search", "max_results": 3}])
    assert len(problems) == 1
    assert problems[0].startswith("tools.0.max_results")
    assert "unknown field" in problems[0]
    assert "type, parameters" in problems[0]


def test_tool_without_type_refused() -> None:
    problems = problems_of(tools=[{"parameters": {}}])
    assert problems[0].startswith("tools.0.type")


# --- unknown fields and error shape ---------------------------------------------------


def test_unknown_top_level_field_refused() -> None:
    problems = problems_of(max_tokens=100)
    assert len(problems) == 1
    assert problems[0].startswith("max_tokens")
    assert "unknown field" in problems[0]
    # The message lists the fields that are allowed.
    for field in ("analysis_models", "max_tool_calls", "temperature", "tools"):
        assert field in problems[0]


def test_error_is_a_value_error_with_problems_in_the_message() -> None:
    with pytest.raises(ValueError, match="max_tool_calls") as info:
        FusionParameters(max_tool_calls=99)
    assert isinstance(info.value, FusionParameterError)
    assert info.value.problems
    for problem in info.value.problems:
        assert problem in str(info.value)


def test_several_problems_reported_at_once() -> None:
    problems = problems_of(analysis_models=[], max_tool_calls=0, temperature=3, bogus=1)
    assert len(problems) == 4
    joined = "\n".join(problems)
    assert "1 to 8" in joined
    assert "1 to 16" in joined
    assert "0 to 2" in joined
    assert any(p.startswith("bogus") for p in problems)


def test_model_validate_reports_each_problem_like_the_constructor() -> None:
    data = {"max_tool_calls": 17, "temperature": 3}
    with pytest.raises(FusionParameterError) as info:
        FusionParameters.model_validate(data)
    assert info.value.problems == problems_of(**data)
    assert len(info.value.problems) == 2
    assert info.value.problems[0].startswith("max_tool_calls")
    assert "1 to 16" in info.value.problems[0]
    assert info.value.problems[1].startswith("temperature")
    assert "0 to 2" in info.value.problems[1]


def test_model_validate_json_raises_fusion_parameter_error() -> None:
    # The class promises FusionParameterError for out-of-range values, whichever
    # pydantic entry point loads them.
    with pytest.raises(FusionParameterError) as info:
        FusionParameters.model_validate_json('{"max_tool_calls": 17}')
    assert "1 to 16" in info.value.problems[0]


# --- presets --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "panel", "judge"),
    [
        ("general-high", CONTRACT_DEFAULT_PANEL, "~anthropic/claude-opus-latest"),
        ("general-budget", SEED_PANEL, "~google/gemini-flash-latest"),
        (
            "general-fast",
            [
                "~google/gemini-flash-latest",
                "~openai/gpt-mini-latest",
                "~anthropic/claude-haiku-latest",
            ],
            "~google/gemini-flash-latest",
        ),
    ],
)
def test_preset_expands_to_panel_and_judge(preset: str, panel: list[str], judge: str) -> None:
    params = FusionParameters(preset=preset)
    assert params.panel == panel
    assert params.judge == judge
    assert params.analysis_models is None
    assert params.model is None


@pytest.mark.parametrize("preset", ["general-high", "general-budget", "general-fast"])
def test_explicit_models_win_over_preset(preset: str) -> None:
    both = FusionParameters(preset=preset, analysis_models=["x/one", "x/one"], model="x/judge")
    assert both.panel == ["x/one", "x/one"]
    assert both.judge == "x/judge"

    only_panel = FusionParameters(preset=preset, analysis_models=["x/one"])
    assert only_panel.panel == ["x/one"]
    assert only_panel.judge == PRESETS[preset].model

    only_judge = FusionParameters(preset=preset, model="x/judge")
    assert only_judge.panel == list(PRESETS[preset].analysis_models)
    assert only_judge.judge == "x/judge"


def test_unknown_preset_refused_listing_known_ones() -> None:
    problems = problems_of(preset="general-huge")
    assert len(problems) == 1
    assert problems[0].startswith("preset")
    assert "general-huge" in problems[0]
    for known in ("general-high", "general-budget", "general-fast"):
        assert known in problems[0]


def test_get_preset_unknown_names_known_ones() -> None:
    with pytest.raises(KeyError, match="general-budget") as info:
        get_preset("nope")
    assert "nope" in str(info.value)


@pytest.mark.usefixtures("restore_presets")
def test_register_preset_is_usable_by_name() -> None:
    custom = Preset(analysis_models=("a/one", "b/two"), model="c/judge")
    register_preset("test-custom", custom)
    assert PRESETS["test-custom"] == custom
    params = FusionParameters(preset="test-custom")
    assert params.panel == ["a/one", "b/two"]
    assert params.judge == "c/judge"
    assert FusionParameters.from_json({"preset": "test-custom"}).panel == ["a/one", "b/two"]


@pytest.mark.usefixtures("restore_presets")
def test_register_preset_refuses_duplicate_without_replace() -> None:
    first = Preset(analysis_models=("a/one",), model="a/one")
    second = Preset(analysis_models=("b/two",), model="b/two")
    register_preset("test-dup", first)
    with pytest.raises(ValueError, match="replace=True"):
        register_preset("test-dup", second)
    assert PRESETS["test-dup"] == first
    register_preset("test-dup", second, replace=True)
    assert FusionParameters(preset="test-dup").panel == ["b/two"]


@pytest.mark.usefixtures("restore_presets")
def test_register_preset_refuses_builtin_name_without_replace() -> None:
    original = PRESETS["general-high"]
    with pytest.raises(ValueError, match="already exists"):
        register_preset("general-high", Preset(analysis_models=("a/one",), model="a/one"))
    assert PRESETS["general-high"] == original


@pytest.mark.parametrize("name", ["", " padded ", "trailing "])
def test_register_preset_refuses_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="preset name"):
        register_preset(name, Preset(analysis_models=("a/one",), model="a/one"))
    assert name not in PRESETS


def test_presets_mapping_is_read_only() -> None:
    with pytest.raises(TypeError):
        PRESETS["hacked"] = Preset(analysis_models=("a/b",), model="a/b")  # type: ignore[index]
    with pytest.raises(TypeError):
        del PRESETS["general-high"]  # type: ignore[attr-defined]
    assert "hacked" not in PRESETS
    assert "general-high" in PRESETS


# --- from_json ------------------------------------------------------------------------


def _assert_seed(params: FusionParameters) -> None:
    assert params.panel == SEED_PANEL
    assert params.analysis_models == SEED_PANEL
    assert params.judge == SEED_JUDGE
    assert params.max_tool_calls == 4
    assert params.tools is None


def test_from_json_seed_article_string() -> None:
    assert json.loads(SEED_TOOL_TEXT) == SEED_TOOL
    _assert_seed(FusionParameters.from_json(SEED_TOOL_TEXT))


def test_from_json_seed_article_dict() -> None:
    _assert_seed(FusionParameters.from_json(SEED_TOOL))


def test_from_json_seed_article_bytes() -> None:
    _assert_seed(FusionParameters.from_json(SEED_TOOL_TEXT.encode()))


@pytest.mark.parametrize("data", ['{"type": "openrouter:fusion"}', {"type": "openrouter:fusion"}])
def test_from_json_bare_type_gives_defaults(data: Any) -> None:
    params = FusionParameters.from_json(data)
    assert params == FusionParameters()
    assert params.panel == CONTRACT_DEFAULT_PANEL
    assert params.max_tool_calls == 4


def test_from_json_bare_parameters_object() -> None:
    text = '{"analysis_models": ["a/b", "a/b"], "max_tool_calls": 4, "temperature": 0.5}'
    params = FusionParameters.from_json(text)
    assert params.panel == ["a/b", "a/b"]
    assert params.max_tool_calls == 4
    assert params.temperature == 0.5


def test_from_json_tools_empty_list() -> None:
    params = FusionParameters.from_json(
        '{"type": "openrouter:fusion", "parameters": {"tools": []}}'
    )
    assert params.effective_tools == ()


def test_from_json_parameter_errors_are_reported() -> None:
    with pytest.raises(FusionParameterError) as info:
        FusionParameters.from_json(
            {"type": "openrouter:fusion", "parameters": {"max_tool_calls": 17}}
        )
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("max_tool_calls")
    assert "1 to 16" in info.value.problems[0]


def test_from_json_reports_several_problems_separately() -> None:
    with pytest.raises(FusionParameterError) as info:
        FusionParameters.from_json('{"analysis_models": [], "max_tool_calls": 0, "bogus": 1}')
    assert len(info.value.problems) == 3
    assert info.value.problems[0].startswith("analysis_models")
    assert info.value.problems[1].startswith("max_tool_calls")
    assert info.value.problems[2].startswith("bogus")


@pytest.mark.parametrize("kind", ["openrouter:web_search", "fusion", ""])
def test_from_json_wrong_type_refused(kind: str) -> None:
    with pytest.raises(FusionParameterError) as info:
        FusionParameters.from_json({"type": kind, "parameters": {}})
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("type")
    assert "openrouter:fusion" in info.value.problems[0]


def test_from_json_extra_top_level_key_refused() -> None:
    with pytest.raises(FusionParameterError) as info:
        FusionParameters.from_json(
            {"type": "openrouter:fusion", "parameters": {}, "name": "fusion"}
        )
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("name")
    assert "type, parameters" in info.value.problems[0]


@pytest.mark.parametrize("text", ["[1, 2]", "[]", '"fusion"', "42", "null"])
def test_from_json_non_object_refused(text: str) -> None:
    with pytest.raises(FusionParameterError, match="expected a JSON object"):
        FusionParameters.from_json(text)


@pytest.mark.parametrize("text", ["{not json", '{"type": "openrouter:fusion",}', "", "   "])
def test_from_json_invalid_text_refused(text: str) -> None:
    with pytest.raises(FusionParameterError, match="not valid JSON"):
        FusionParameters.from_json(text)


@pytest.mark.parametrize("data", [b"\xff", b'{"model": "\xff"}'])
def test_from_json_invalid_utf8_bytes_refused(data: bytes) -> None:
    with pytest.raises(FusionParameterError):
        FusionParameters.from_json(data)


@pytest.mark.parametrize(
    "value",
    [[1], "x", 5, True, [], 0, "", False],
    ids=["list", "string", "int", "true", "empty-list", "zero", "empty-string", "false"],
)
def test_from_json_parameters_not_an_object_refused(value: Any) -> None:
    with pytest.raises(FusionParameterError) as info:
        FusionParameters.from_json({"type": "openrouter:fusion", "parameters": value})
    assert info.value.problems[0].startswith("parameters")
