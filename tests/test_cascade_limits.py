"""The cascade's limits on the scripted server: the deadline and the budget across both
stages, the straggler clock per stage, and a bad cascade refused before any call."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from langchain_fusion import (
    FusionParameterError,
    FusionParameters,
    OpenAICompatibleBackend,
    create_fusion_graph,
)
from langchain_fusion.graph import build_setup
from langchain_fusion.graph.budget import BudgetExceededError, approximate_tokens, estimate_budget
from langchain_fusion.graph.context import RunClock
from langchain_fusion.limits import FusionLimits, ModelPrice
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from langchain_fusion.testing.judges import comparing_judge
from tests.test_cascade import (
    JUDGE,
    PANEL,
    PATHS,
    QUESTION,
    backend_for,
    calls,
    graph_for,
    result_of,
    script,
)


@PATHS
async def test_the_deadline_spans_both_stages(
    scripted_server: ScriptedOpenAIServer, path: str
) -> None:
    """A deadline that passes during the first stage: the remaining seats are never called,
    and are recorded as not asked (whatever the machine's speed, the judge alone takes
    longer than the deadline)."""
    script(scripted_server, ["42", "41", "42", "42"])
    scripted_server.set_script(
        JUDGE, ModelScript(json_reply=comparing_judge(), time_to_first_token=0.6)
    )
    graph = graph_for(scripted_server, limits={"deadline": 0.3})
    result = await result_of(graph, path)

    assert calls(scripted_server, "dear-c") == calls(scripted_server, "dear-d") == 0
    assert result.cascade is not None
    assert not result.cascade.escalated
    assert "not asked" in result.cascade.reason
    assert "deadline" in result.cascade.reason
    not_asked = [f for f in result.failed_models if f.error.startswith("not asked")]
    assert [f.model for f in not_asked] == ["dear-c", "dear-d"]
    assert result.degraded


def _worst_case(cascade: bool) -> float:
    setup = graph_for_estimate(cascade)
    estimate = estimate_budget(
        prompt_tokens=approximate_tokens(QUESTION),
        max_completion_tokens=setup.parameters.max_completion_tokens,
        prices=setup.limits.prices,
        **setup.estimate_inputs(),
    )
    assert estimate.cost is not None
    return estimate.cost


PRICES = {m: ModelPrice(prompt=1e-6, completion=2e-6) for m in [*PANEL, JUDGE]}


def graph_for_estimate(cascade: bool) -> Any:
    return build_setup(
        FusionParameters(analysis_models=PANEL, model=JUDGE, tools=[], max_completion_tokens=100),
        backend=OpenAICompatibleBackend(base_url="http://127.0.0.1:9", api_key=SecretStr("k")),
        synthesize=False,
        limits={"prices": PRICES},
        cascade={"first": 2} if cascade else None,
    )


@PATHS
async def test_the_budget_check_counts_the_second_judge_call(
    scripted_server: ScriptedOpenAIServer, path: str
) -> None:
    full, cascade = _worst_case(False), _worst_case(True)
    assert cascade > full  # the full panel's worst case plus the first analysis
    between = (full + cascade) / 2
    limits = FusionLimits(prices=PRICES, max_cost=between)
    parameters = FusionParameters(
        analysis_models=PANEL, model=JUDGE, tools=[], max_completion_tokens=100
    )
    script(scripted_server, ["42", "42", "1", "2"])
    options: dict[str, Any] = {"backend": backend_for(scripted_server), "synthesize": False}
    plain = create_fusion_graph(parameters, limits=limits, **options)
    cascading = create_fusion_graph(parameters, limits=limits, cascade={"first": 2}, **options)

    assert (await result_of(plain, path)).status == "ok"  # the panel alone fits
    scripted_server.reset()
    script(scripted_server, ["42", "42", "1", "2"])
    with pytest.raises(BudgetExceededError, match="max_cost"):
        await result_of(cascading, path)
    assert scripted_server.requests == []  # refused before any call


@PATHS
async def test_a_budget_that_fits_holds_across_both_stages(
    scripted_server: ScriptedOpenAIServer, path: str
) -> None:
    script(scripted_server, ["42", "41", "42", "42"])
    parameters = FusionParameters(
        analysis_models=PANEL, model=JUDGE, tools=[], max_completion_tokens=100
    )
    limits = FusionLimits(prices=PRICES, max_cost=_worst_case(True))
    graph = create_fusion_graph(
        parameters,
        backend=backend_for(scripted_server),
        synthesize=False,
        limits=limits,
        cascade={"first": 2},
    )
    result = await result_of(graph, path)
    assert result.cascade is not None
    assert result.cascade.escalated
    spent = sum(
        u.input_tokens * PRICES[m].prompt + u.output_tokens * PRICES[m].completion
        for m, u in result.usage.by_model.items()
    )
    assert 0 < spent <= _worst_case(True)


def test_escalation_restarts_the_quorum_clock_for_the_straggler_grace() -> None:
    clock = RunClock(FusionLimits(min_successful=1, straggler_grace=5.0))
    clock.record_success()
    assert clock.quorum_at is not None
    clock.start_stage()
    assert clock.quorum_at is None
    assert clock.successes == 0
    clock.record_success()
    assert clock.quorum_at is not None


@pytest.mark.parametrize(
    ("cascade", "limits", "message"),
    [
        ({"first": 4}, {}, "no seat would be left"),
        ({"first": 1}, {}, "cascade.first"),
        ({"first": 2}, {"min_successful": 3}, "below min_successful"),
        ({"first": 2, "rul": "exact"}, {}, "unknown field; allowed fields: first, rule"),
        ({"first": 2, "rule": "fuzzy"}, {}, "one of analysis, exact, normalised, numeric"),
        ({"first": 2, "judge_first": False}, {}, "judge_first cannot be false"),
        ({"first": 2, "tolerance": -1}, {}, "cascade.tolerance"),
    ],
)
def test_a_bad_cascade_is_refused_before_any_call(
    scripted_server: ScriptedOpenAIServer,
    cascade: dict[str, Any],
    limits: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(FusionParameterError, match=message):
        graph_for(scripted_server, cascade, limits=limits)
    assert scripted_server.requests == []


def test_fusion_tool_refuses_a_bad_cascade_with_our_message(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    from langchain_fusion import FusionTool

    with pytest.raises(ValueError, match="unknown field; allowed fields: first, rule"):
        FusionTool(backend=backend_for(scripted_server), cascade={"first": 2, "rul": "exact"})
    with pytest.raises(ValueError, match="no seat would be left"):
        FusionTool(
            backend=backend_for(scripted_server), analysis_models=PANEL, cascade={"first": 4}
        )
