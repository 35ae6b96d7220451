"""Behaviours that hand-made mutations of the core once changed without a test failing:
the judge's retry after a schema mismatch, its usage and its budget check, an anonymised
judge's labels mapped back to the seats, the failure reason of a mixed panel in which one
seat was stopped by the budget, and "did you mean" on unknown parameter fields."""

from __future__ import annotations

import re
from typing import Any

import pytest

from langchain_fusion import FusionParameterError, FusionParameters
from langchain_fusion.contract.result import TokenUsage
from langchain_fusion.graph.result import build_result
from langchain_fusion.graph.state import PanelOutcome
from langchain_fusion.limits import ModelPrice
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from tests.test_reliability import JUDGE, PANEL, VALID, graph_for

WRONG_SHAPE = {"consensus": "they agree", "verdict": 3}
"""JSON, but not the analysis schema: `judge_schema_mismatch`."""


def told(body: dict[str, Any]) -> bool:
    return any("could not be used" in str(m.get("content")) for m in body["messages"])


def test_a_schema_mismatch_is_retried_once_with_the_reason(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    scripted_server.set_script(
        JUDGE, ModelScript(json_reply=lambda body: VALID if told(body) else WRONG_SHAPE)
    )
    result = graph_for(scripted_server).invoke({"messages": "q"})["result"]
    first, second = scripted_server.requests_for(JUDGE)
    assert not told(first.body)
    assert told(second.body)
    assert result.analysis is not None
    assert result.failure_reason is None


def test_the_retry_is_counted_in_the_judges_usage(scripted_server: ScriptedOpenAIServer) -> None:
    scripted_server.set_script(
        JUDGE, ModelScript(json_reply=lambda body: VALID if told(body) else "prose")
    )
    result = graph_for(scripted_server).invoke({"messages": "q"})["result"]
    assert len(scripted_server.requests_for(JUDGE)) == 2
    scripted_server.set_script(JUDGE, ModelScript(json_reply=VALID))
    once = graph_for(scripted_server).invoke({"messages": "q"})["result"]  # right at once
    assert len(scripted_server.requests_for(JUDGE)) == 3
    # The same first call in both runs; the first run's retry is counted on top of it.
    assert result.usage.judge.input_tokens > once.usage.judge.input_tokens
    assert result.usage.judge.output_tokens > once.usage.judge.output_tokens
    assert result.usage.by_model[JUDGE].total_tokens == result.usage.judge.total_tokens


def test_no_retry_starts_once_the_judge_spent_the_budget(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    # The estimate uses the configured (cheap) prices; the judge then reports a far higher
    # cost for its first, unusable reply: the retry is not made.
    scripted_server.set_script(JUDGE, ModelScript(json_reply="prose", cost_per_token=0.01))
    prices = {m: ModelPrice(prompt=1e-7, completion=1e-7) for m in [*PANEL, JUDGE]}
    graph = graph_for(
        scripted_server,
        parameters={"max_completion_tokens": 100},
        limits={"max_cost": 0.05, "prices": prices},
    )
    result = graph.invoke({"messages": "q"})["result"]
    assert len(scripted_server.requests_for(JUDGE)) == 1
    assert result.failure_reason == "budget_exceeded"
    assert "budget spent" in (result.failure_detail or "")


def test_an_anonymised_judges_labels_are_mapped_back_to_the_seats(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    def analysis(body: dict[str, Any]) -> dict[str, Any]:
        # The judge sees letters only; it answers about Response A, B and C.
        return {
            **VALID,
            "contradictions": [
                {
                    "topic": "t",
                    "stances": [
                        {"model": "Response A", "stance": "yes"},
                        {"model": "Response B", "stance": "no"},
                    ],
                }
            ],
            "partial_coverage": [{"models": ["Response C"], "point": "p"}],
            "unique_insights": [{"model": "Response B", "insight": "i"}],
        }

    scripted_server.set_script(JUDGE, ModelScript(json_reply=analysis))
    result = graph_for(scripted_server, anonymize_judge=True).invoke({"messages": "q"})["result"]
    (judge_request,) = scripted_server.requests_for(JUDGE)
    shown = judge_request.body["messages"][-1]["content"]
    # Which seat the judge saw as which letter: the content of each lettered response.
    content = {response.model: response.content for response in result.responses}
    letter_of = {}
    for letter, body in re.findall(
        r'model="Response (\w)"[^>]*>\s*(.*?)\s*</response>', shown, re.S
    ):
        (seat,) = [model for model, text in content.items() if text.strip() == body.strip()]
        letter_of[letter] = seat
    assert sorted(letter_of.values()) == sorted(PANEL)
    assert result.analysis is not None
    stances = result.analysis.contradictions[0].stances
    assert [stance.model for stance in stances] == [letter_of["A"], letter_of["B"]]
    assert result.analysis.partial_coverage[0].models == [letter_of["C"]]
    assert result.analysis.unique_insights[0].model == letter_of["B"]


def test_a_mixed_panel_with_one_seat_stopped_by_the_budget_failed_on_the_budget() -> None:
    outcomes = [
        PanelOutcome(index=0, model="a", error="HTTP 500", status_code=500),
        PanelOutcome(index=1, model="b", error="budget spent: ...", stopped="budget"),
        PanelOutcome(index=2, model="c", error="timed out", stopped="deadline"),
    ]
    result = build_result(outcomes, None, min_successful=1)
    assert result.failure_reason == "budget_exceeded"
    one_answer = [
        PanelOutcome(index=0, model="a", content="yes", usage=TokenUsage(output_tokens=1)),
        *outcomes[1:],
    ]
    assert build_result(one_answer, None, min_successful=2).failure_reason == "budget_exceeded"
    without_budget = [outcomes[0], outcomes[2]]
    assert build_result(without_budget, None, min_successful=1).failure_reason != (
        "budget_exceeded"
    )


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        ({"analysis_model": ["a"]}, "did you mean `analysis_models`?"),
        ({"max_tool_call": 3}, "did you mean `max_tool_calls`?"),
        ({"reasoning": {"efort": "high"}}, "did you mean `effort`?"),
    ],
)
def test_an_unknown_parameter_field_names_the_closest_one(data: dict[str, Any], hint: str) -> None:
    with pytest.raises(FusionParameterError) as raised:
        FusionParameters.model_validate(data)
    assert hint in str(raised.value)


# --- the gateway's panel limit -------------------------------------------------------------


def test_the_panel_limit_admits_its_own_size_and_refuses_one_more() -> None:
    from langchain_fusion.server import Policy
    from tests.test_server_support import PANEL as GATEWAY_PANEL
    from tests.test_server_support import QUESTION, running_gateway

    limit = len(GATEWAY_PANEL) + 1
    for gateway in running_gateway(policy=Policy(max_panel=limit)):

        def ask(panel: list[str], gateway: Any = gateway) -> Any:
            tool = {"type": "openrouter:fusion", "parameters": {"analysis_models": panel}}
            body = {
                "model": "outer/model-x",
                "messages": [{"role": "user", "content": QUESTION}],
                "tools": [tool],
                "tool_choice": "required",
            }
            return gateway.post("/chat/completions", body)

        at_limit = [*GATEWAY_PANEL, "panel-z"]
        assert len(at_limit) == limit
        assert ask(at_limit).status_code == 200
        assert {r.model for r in gateway.upstream.requests} >= set(at_limit)
        gateway.reset()
        over = ask([*at_limit, "panel-y"])
        assert over.status_code == 403, over.text
        assert f"panel of {limit + 1} models" in over.text
        assert gateway.upstream.requests == []


def test_a_panel_limit_of_zero_is_refused_everywhere() -> None:
    from langchain_fusion.server import Policy
    from langchain_fusion.server.config import ServerConfig
    from tests.test_cli import invoke

    with pytest.raises(ValueError, match="max_panel"):
        Policy(max_panel=0)
    with pytest.raises(ValueError, match="max_panel"):
        ServerConfig(max_panel=0)
    done = invoke("serve", "--max-panel", "0", "--port", "0")
    assert done.exit_code == 2
    assert "--max-panel" in done.stderr
    done = invoke("mcp", "--max-panel", "0")
    assert done.exit_code == 2
    assert "--max-panel" in done.stderr


@pytest.mark.parametrize(
    ("keyword", "hint"),
    [
        ("analysis_model", "did you mean `analysis_models`, in `parameters`?"),
        ("deadlin", "did you mean `deadline`, in `limits`?"),
        ("anonymise_judge", "did you mean `anonymize_judge`?"),
    ],
)
def test_a_misspelt_graph_keyword_names_the_closest_one_and_where_it_goes(
    keyword: str, hint: str
) -> None:
    from langchain_fusion import create_fusion_graph

    with pytest.raises(TypeError) as raised:
        create_fusion_graph(**{keyword: ["a"]})
    assert hint in str(raised.value)
