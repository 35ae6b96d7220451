"""The pipeline on a real LLM: SmolLM2-135M served in-process by llama.cpp on loopback.

One deliberation end to end (async, three panelists, judge and synthesis): the rest of
the pipeline is checked on the scripted server, which is much faster. Short answers and a
one-item analysis keep it to a few hundred generated tokens, and the per-call timeout is
generous: what is checked is that every stage runs on the real model, not how fast.
"""

from __future__ import annotations

import pytest

from langchain_fusion import FusionResult
from langchain_fusion.contract.result import AnalysisLimits
from langchain_fusion.local import LOCAL_MODEL_NAME, LocalModelServer, create_local_fusion_graph

# A generous limit: on a loaded machine one run can take minutes; a hang is still caught.
pytestmark = [pytest.mark.local_model, pytest.mark.timeout(900)]


async def test_three_smollm2_panelists_a_judge_and_a_synthesis() -> None:
    # One llama.cpp thread that does not spin: its CPU time stays the same however busy the
    # machine is (two threads spin on each other when a core is taken, doubling it).
    with LocalModelServer(threads=1, poll=0) as local_server:
        assert local_server.base_url.startswith("http://127.0.0.1:")
        graph = create_local_fusion_graph(
            local_server,
            panel_tokens=40,
            judge_tokens=400,
            analysis_limits=AnalysisLimits(max_items=1, max_text=60),
            timeout=800,
        )
        output = await graph.ainvoke({"messages": [("user", "Name two causes of ocean tides.")]})
    result: FusionResult = output["result"]

    # The contract's JSON round-trips, with an analysis present.
    dumped = result.model_dump(mode="json")
    assert FusionResult.model_validate(dumped) == result
    assert result.status == "ok", result.failure_detail
    assert result.failure_reason is None, result.failure_detail
    assert result.analysis is not None
    assert set(dumped["analysis"]) == {
        "consensus",
        "contradictions",
        "partial_coverage",
        "unique_insights",
        "blind_spots",
    }
    # Three seats of one model: each has its own label (the judge can tell them apart).
    assert [r.model for r in result.responses] == [f"{LOCAL_MODEL_NAME}#{k}" for k in (1, 2, 3)]
    assert all(r.content.strip() for r in result.responses)
    # Distinct seeds: the same model three times is a panel of different answers.
    assert len({r.content for r in result.responses}) == 3
    assert result.usage.panel.output_tokens > 0
    assert result.usage.judge.output_tokens > 0
    # The synthesis wrote the answer from the analysis.
    assert output["answer"].strip()
    assert result.usage.synthesis.output_tokens > 0
