"""The research loop: tool steps bounded by max_tool_calls, tool errors, sources, server tools."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.tools import tool
from pydantic import SecretStr

from langchain_fusion import FusionParameters, OpenAICompatibleBackend, Source, create_fusion_graph
from langchain_fusion.testing import ModelScript, RecordedRequest, ScriptedOpenAIServer

PANEL = ["panel-a", "panel-b"]
JUDGE = "judge-j"
QUESTION = "What changed in the 2024 release?"

calls: list[str] = []


@tool(response_format="content_and_artifact")
def lookup(query: str) -> tuple[str, list[Source]]:
    """Look something up in the release notes."""
    calls.append(query)
    url = f"https://notes.example/{query.replace(' ', '-')}"
    return f"notes for {query}", [Source(url=url, title=f"Notes: {query}")]


@tool
def broken(query: str) -> str:
    """A tool that always fails."""
    raise RuntimeError(f"disk on fire while looking up {query}")


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


def backend_for(server: ScriptedOpenAIServer, **kwargs: Any) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        base_url=server.base_url, api_key=SecretStr("k"), max_retries=0, timeout=10, **kwargs
    )


def chat(server: ScriptedOpenAIServer, model: str) -> list[RecordedRequest]:
    return server.requests_for(model)


def tool_names(request: RecordedRequest) -> list[str]:
    return [t.get("function", {}).get("name") or t["type"] for t in request.body.get("tools", [])]


@pytest.mark.parametrize("max_tool_calls", [1, 3])
def test_a_panelist_that_always_calls_tools_takes_exactly_max_steps(
    scripted_server: ScriptedOpenAIServer, max_tool_calls: int
) -> None:
    scripted_server.set_script(
        "panel-a",
        ModelScript(
            tool_calls=[{"name": "lookup", "arguments": {"query": "2024"}}], tool_policy="always"
        ),
    )
    graph = create_fusion_graph(
        FusionParameters(analysis_models=["panel-a"], model=JUDGE, max_tool_calls=max_tool_calls),
        backend=backend_for(scripted_server),
        research_tools=[lookup],
        synthesize=False,
    )
    result = graph.invoke({"messages": QUESTION})["result"]

    requests = chat(scripted_server, "panel-a")
    assert len(requests) == max_tool_calls + 1
    assert all(tool_names(r) == ["lookup"] for r in requests[:-1])
    assert "tools" not in requests[-1].body  # the last call must answer in text
    assert len(calls) == max_tool_calls
    (answer,) = result.responses
    assert answer.content == requests[-1].response_text
    # Each tool result reached the model as a tool message.
    roles = [m["role"] for m in requests[-1].body["messages"]]
    assert roles.count("tool") == max_tool_calls


def test_a_first_turn_tool_call_then_an_answer(scripted_server: ScriptedOpenAIServer) -> None:
    scripted_server.set_script(
        "panel-a", ModelScript(tool_calls=[{"name": "lookup", "arguments": {"query": "api"}}])
    )
    graph = create_fusion_graph(
        FusionParameters(analysis_models=PANEL, model=JUDGE),
        backend=backend_for(scripted_server),
        research_tools=[lookup],
        synthesize=False,
    )
    result = graph.invoke({"messages": QUESTION})["result"]
    first, second = chat(scripted_server, "panel-a")
    assert tool_names(first) == ["lookup"]
    assert tool_names(second) == ["lookup"]
    assert second.body["messages"][-1] == {
        "role": "tool",
        "content": "notes for api",
        "tool_call_id": second.body["messages"][-2]["tool_calls"][0]["id"],
    }
    (only_b,) = chat(scripted_server, "panel-b")  # panel-b answered on its first turn
    assert only_b.response_text == result.responses[1].content
    assert result.sources == [Source(url="https://notes.example/api", title="Notes: api")]
    # Both of panel-a's calls count in its usage.
    assert (
        result.usage.by_model["panel-a"].input_tokens
        > result.usage.by_model["panel-b"].input_tokens
    )


@pytest.mark.parametrize(
    ("tools", "call", "expected"),
    [
        ([broken], "broken", "disk on fire while looking up x"),
        ([lookup], "no_such_tool", "there is no tool named 'no_such_tool'"),
    ],
)
def test_tool_errors_come_back_as_tool_messages(
    scripted_server: ScriptedOpenAIServer, tools: list[Any], call: str, expected: str
) -> None:
    scripted_server.set_script(
        "panel-a", ModelScript(tool_calls=[{"name": call, "arguments": {"query": "x"}}])
    )
    graph = create_fusion_graph(
        FusionParameters(analysis_models=["panel-a"], model=JUDGE),
        backend=backend_for(scripted_server),
        research_tools=tools,
        synthesize=False,
    )
    result = graph.invoke({"messages": QUESTION})["result"]
    assert result.failed_models == []
    _, second = chat(scripted_server, "panel-a")
    tool_message = second.body["messages"][-1]
    assert tool_message["role"] == "tool"
    assert expected in tool_message["content"]


def test_sources_are_deduplicated_across_panelists_and_judge(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    same = ModelScript(tool_calls=[{"name": "lookup", "arguments": {"query": "shared"}}])
    for model in PANEL:
        scripted_server.set_script(model, same)
    scripted_server.set_script(
        JUDGE,
        ModelScript(tool_calls=[{"name": "lookup", "arguments": {"query": "judge only"}}]),
    )
    graph = create_fusion_graph(
        FusionParameters(analysis_models=PANEL, model=JUDGE),
        backend=backend_for(scripted_server),
        research_tools=[lookup],
        synthesize=False,
    )
    result = graph.invoke({"messages": QUESTION})["result"]
    assert calls == ["shared", "shared", "judge only"]
    assert [s.url for s in result.sources] == [
        "https://notes.example/shared",
        "https://notes.example/judge-only",
    ]
    # The judge researched with the analysis schema in the same request, then answered JSON.
    first, second = chat(scripted_server, JUDGE)
    assert tool_names(first) == ["lookup"]
    assert first.body["response_format"]["type"] == "json_schema"
    assert first.body["temperature"] == 0
    assert result.analysis is not None
    assert second.body["messages"][-1]["role"] == "tool"


def test_tools_off_means_no_tools_anywhere(scripted_server: ScriptedOpenAIServer) -> None:
    graph = create_fusion_graph(
        FusionParameters(analysis_models=PANEL, model=JUDGE, tools=[]),
        backend=backend_for(scripted_server),
        research_tools=[lookup],
        synthesize=False,
    )
    result = graph.invoke({"messages": QUESTION})["result"]
    assert result.analysis is not None
    assert all("tools" not in r.body for r in scripted_server.requests)


async def test_async_research_loop(scripted_server: ScriptedOpenAIServer) -> None:
    scripted_server.set_script(
        "panel-a",
        ModelScript(
            tool_calls=[
                {"name": "lookup", "arguments": {"query": "one"}},
                {"name": "lookup", "arguments": {"query": "two"}},
            ],
            tool_policy="always",
        ),
    )
    graph = create_fusion_graph(
        FusionParameters(analysis_models=["panel-a"], model=JUDGE, max_tool_calls=2),
        backend=backend_for(scripted_server),
        research_tools=[lookup],
        synthesize=False,
    )
    result = (await graph.ainvoke({"messages": QUESTION}))["result"]
    assert sorted(calls) == ["one", "one", "two", "two"]  # two parallel calls per step
    assert len(chat(scripted_server, "panel-a")) == 3
    assert {s.url for s in result.sources} == {
        "https://notes.example/one",
        "https://notes.example/two",
    }


def test_openrouter_server_tools_pass_through_and_citations_become_sources(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    cited = ModelScript(annotations=[{"url": "https://pages.example/a", "title": "Page A"}])
    scripted_server.set_script("panel-a", cited)
    scripted_server.set_script(
        "panel-b",
        ModelScript(
            annotations=[
                {"url": "https://pages.example/a", "title": "Page A"},
                {"url": "https://pages.example/b", "title": "Page B"},
            ]
        ),
    )
    parameters = FusionParameters.from_json(
        {
            "type": "openrouter:fusion",
            "parameters": {
                "analysis_models": PANEL,
                "model": JUDGE,
                "tools": [
                    {"type": "openrouter:web_search", "parameters": {"max_results": 3}},
                    {"type": "openrouter:web_fetch"},
                ],
            },
        }
    )
    graph = create_fusion_graph(
        parameters, backend=backend_for(scripted_server, runs_hosted_tools=True), synthesize=False
    )
    result = graph.invoke({"messages": QUESTION})["result"]
    expected_tools = [
        {"type": "openrouter:web_search", "parameters": {"max_results": 3}},
        {"type": "openrouter:web_fetch"},
    ]
    for model in [*PANEL, JUDGE]:
        (request,) = chat(scripted_server, model)  # the server researches within one call
        assert request.body["tools"] == expected_tools
    (judge,) = chat(scripted_server, JUDGE)
    assert judge.body["response_format"]["type"] == "json_schema"
    assert result.analysis is not None
    assert result.sources == [
        Source(url="https://pages.example/a", title="Page A"),
        Source(url="https://pages.example/b", title="Page B"),
    ]
