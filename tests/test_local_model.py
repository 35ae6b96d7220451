"""The pipeline on a real LLM: SmolLM2-135M served in-process by llama.cpp on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from langchain_fusion import FusionParameters, FusionResult
from langchain_fusion.local import LOCAL_MODEL_NAME, LocalModelServer, create_local_fusion_graph

pytestmark = pytest.mark.local_model


@pytest.fixture(scope="module")
def local_server() -> Iterator[LocalModelServer]:
    with LocalModelServer() as server:
        yield server


def test_local_server_listens_on_loopback(local_server: LocalModelServer) -> None:
    assert local_server.base_url.startswith("http://127.0.0.1:")


def test_three_smollm2_panelists_produce_a_contract_result(
    local_server: LocalModelServer,
) -> None:
    graph = create_local_fusion_graph(local_server, synthesize=False)
    output = graph.invoke({"messages": [("user", "Name two causes of ocean tides.")]})
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


async def test_local_synthesis_async(local_server: LocalModelServer) -> None:
    graph = create_local_fusion_graph(
        local_server, FusionParameters(analysis_models=[LOCAL_MODEL_NAME] * 2)
    )
    output = await graph.ainvoke({"messages": [("user", "Is a tomato a fruit?")]})
    assert output["answer"].strip()
    assert output["result"].usage.synthesis.output_tokens > 0
