"""Correct against a provider as strict as the real ones (issue 11).

Every request goes over HTTP to the strict scripted server, which refuses what OpenAI,
Anthropic and OpenRouter refuse: these tests pass only when every transcript we send would
be accepted by a real provider, for `invoke`, `ainvoke`, `stream` and `astream`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.tools import tool

from langchain_fusion import FusionResult, FusionTool, create_fusion_graph
from langchain_fusion.contract import events as ev
from langchain_fusion.testing import ModelScript, RecordedRequest, ScriptedOpenAIServer
from tests.test_chat_fusion import (
    JUDGE,
    OUTER,
    PANEL,
    QUESTION,
    chat,
    get_weather,
    offered_tools,
    outer_requests,
    panel_requests,
)
from tests.test_graph_scripted import backend_for

MODES = ["invoke", "ainvoke", "stream", "astream"]
BOTH_CALLS = ModelScript(
    tool_calls=[
        {"name": "fusion", "arguments": {"prompt": QUESTION}},
        {"name": "get_weather", "arguments": {"city": "Oslo"}},
    ]
)


async def run(runnable: Any, mode: str, messages: Any, **kwargs: Any) -> BaseMessage:
    """The final message, whichever way it was asked for."""
    if mode == "invoke":
        return runnable.invoke(messages, **kwargs)  # type: ignore[no-any-return]
    if mode == "ainvoke":
        return await runnable.ainvoke(messages, **kwargs)  # type: ignore[no-any-return]
    total: AIMessageChunk | None = None
    if mode == "stream":
        for chunk in runnable.stream(messages, **kwargs):
            total = chunk if total is None else total + chunk
    else:
        async for chunk in runnable.astream(messages, **kwargs):
            total = chunk if total is None else total + chunk
    assert total is not None
    return total


def refused(server: ScriptedOpenAIServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.status_code != 200]


# --- 1. parallel tool calls -----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_fusion_and_a_user_tool_in_one_message(
    scripted_server: ScriptedOpenAIServer, mode: str
) -> None:
    scripted_server.set_script(OUTER, BOTH_CALLS)
    llm = chat(scripted_server).bind_tools([get_weather])

    first = await run(llm, mode, [HumanMessage(QUESTION)])
    # The caller's own call comes back; nothing is dropped, and fusion rode along.
    assert [(c["name"], c["args"]) for c in first.tool_calls] == [("get_weather", {"city": "Oslo"})]
    assert "fusion" in first.additional_kwargs
    assert "fusion_result" in first.response_metadata
    assert len(panel_requests(scripted_server)) == len(PANEL)

    # The caller runs its tool and sends the conversation back.
    call = first.tool_calls[0]
    conversation = [
        HumanMessage(QUESTION),
        first,
        ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]),
    ]
    second = await run(llm, mode, conversation)

    assert refused(scripted_server) == []
    assert len(panel_requests(scripted_server)) == len(PANEL)  # not deliberated again
    last = outer_requests(scripted_server)[-1]
    assert offered_tools(last) == ["get_weather"]
    sent = last.body["messages"]
    (assistant,) = [m for m in sent if m["role"] == "assistant"]
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["fusion", "get_weather"]
    answered = {m["tool_call_id"] for m in sent if m["role"] == "tool"}
    assert answered == {c["id"] for c in assistant["tool_calls"]}
    assert second.content == last.response_text
    assert not second.tool_calls


def test_an_agent_with_a_user_tool_and_fusion_in_one_message(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    from langchain.agents import create_agent

    ran: list[str] = []

    @tool
    def local_weather(city: str) -> str:
        """Get the weather for a city."""
        ran.append(city)
        return f"sunny in {city}"

    scripted_server.set_script(
        OUTER,
        ModelScript(
            tool_calls=[
                {"name": "fusion", "arguments": {"prompt": QUESTION}},
                {"name": "local_weather", "arguments": {"city": "Oslo"}},
            ]
        ),
    )
    agent = create_agent(chat(scripted_server), tools=[local_weather])
    final = agent.invoke({"messages": [HumanMessage(QUESTION)]})

    assert refused(scripted_server) == []  # the strict server accepted every transcript
    assert ran == ["Oslo"]  # the user's tool ran once
    assert len(panel_requests(scripted_server)) == len(PANEL)  # the panel deliberated once
    answer = final["messages"][-1]
    assert isinstance(answer, AIMessage)
    assert not answer.tool_calls
    assert answer.content == outer_requests(scripted_server)[-1].response_text


# --- 2. misspelt parameters never run the expensive default ----------------------------


@pytest.mark.parametrize(
    ("build", "owner"),
    [
        (lambda s: chat(s, analysis_model=["x"]), "ChatFusion"),
        (
            lambda s: FusionTool(analysis_model=["x"], judge_model=JUDGE, backend=backend_for(s)),
            "FusionTool",
        ),
        (lambda s: create_fusion_graph(analysis_model=["x"], backend=backend_for(s)), "graph"),
    ],
)
def test_a_misspelt_keyword_is_refused_with_the_closest_name(
    scripted_server: ScriptedOpenAIServer, build: Any, owner: str
) -> None:
    with pytest.raises(TypeError, match=r"`analysis_model`; did you mean `analysis_models`"):
        build(scripted_server)
    assert scripted_server.requests == []


def test_fields_langchain_passes_itself_are_accepted(scripted_server: ScriptedOpenAIServer) -> None:
    llm = chat(scripted_server, tags=["t"], metadata={"k": 1}, name="n", callbacks=None)
    assert llm.name == "n"
    tool_ = FusionTool(
        analysis_models=PANEL, judge_model=JUDGE, backend=backend_for(scripted_server), tags=["t"]
    )
    assert tool_.tags == ["t"]


# --- 3. the sync fan-out runs the whole panel at once -----------------------------------


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_a_panel_of_eight_runs_at_once(
    scripted_server: ScriptedOpenAIServer, mode: str
) -> None:
    panel = [f"seat-{n}" for n in range(8)]
    for model in panel:
        scripted_server.set_script(model, ModelScript(time_to_first_token=0.5))
    graph = create_fusion_graph(
        {"analysis_models": panel, "model": JUDGE, "tools": []},
        backend=backend_for(scripted_server),
        synthesize=False,
    )
    request = {"messages": [HumanMessage(QUESTION)]}
    await (graph.ainvoke(request) if mode == "ainvoke" else _sync(graph.invoke, request))
    seats = [r for r in scripted_server.requests if r.model in panel]
    assert len(seats) == 8
    # Every panelist's request arrived before any panelist had its answer: one wave.
    last_started = max(r.received_at for r in seats)
    first_done = min(r.completed_at or float("inf") for r in seats)
    assert last_started < first_done


async def _sync(func: Any, *args: Any) -> Any:
    return func(*args)


# --- 4. a panel that repeats a model is readable ----------------------------------------


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_repeated_seats_have_distinct_labels_everywhere(
    scripted_server: ScriptedOpenAIServer, mode: str
) -> None:
    scripted_server.set_script("m", ModelScript(fail_first=1, status_code=503))
    graph = create_fusion_graph(
        {"analysis_models": ["m", "m", "m"], "model": JUDGE, "tools": []},
        backend=backend_for(scripted_server),
        synthesize=False,
    )
    request = {"messages": [HumanMessage(QUESTION)]}
    if mode == "invoke":
        parts = list(graph.stream(request, stream_mode=["custom", "values"]))
    else:
        parts = [part async for part in graph.astream(request, stream_mode=["custom", "values"])]
    seen = [chunk for kind, chunk in parts if kind == "custom"]
    result: FusionResult = [chunk for kind, chunk in parts if kind == "values"][-1]["result"]

    labels = {"m#1", "m#2", "m#3"}
    assert [e["model"] for e in seen if e["type"] == ev.PANEL_ADDED] == ["m#1", "m#2", "m#3"]
    answered = {r.model for r in result.responses}
    failed = {f.model for f in result.failed_models}
    assert answered | failed == labels
    assert len(failed) == 1
    assert set(result.usage.by_model) - {JUDGE} == labels
    (judge_request,) = scripted_server.requests_for(JUDGE)
    prompt = judge_request.body["messages"][-1]["content"]
    assert all(f'model="{label}"' in prompt for label in answered)
    done = [e for e in seen if e["type"] in (ev.PANEL_COMPLETED, ev.PANEL_FAILED)]
    assert {e["model"] for e in done} == labels


def test_a_panel_without_repeats_keeps_plain_names(scripted_server: ScriptedOpenAIServer) -> None:
    graph = create_fusion_graph(
        {"analysis_models": PANEL, "model": JUDGE, "tools": []},
        backend=backend_for(scripted_server),
        synthesize=False,
    )
    result = graph.invoke({"messages": [HumanMessage(QUESTION)]})["result"]
    assert [r.model for r in result.responses] == PANEL


# --- 5. smaller ones ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("choice", ["none", False])
async def test_a_call_tool_choice_overrides_a_forcing_instance(
    scripted_server: ScriptedOpenAIServer, mode: str, choice: Any
) -> None:
    llm = chat(scripted_server, tool_choice="required")
    message = await run(llm, mode, QUESTION, tool_choice=choice)
    assert panel_requests(scripted_server) == []  # no deliberation was forced
    (only,) = outer_requests(scripted_server)
    assert only.body.get("tool_choice") == ("none" if choice == "none" else None)
    assert message.content == only.response_text


def test_bind_tools_reserves_the_name_fusion(scripted_server: ScriptedOpenAIServer) -> None:
    @tool
    def fusion(prompt: str) -> str:
        """My own fusion."""
        return prompt

    with pytest.raises(ValueError, match="'fusion' is reserved"):
        chat(scripted_server).bind_tools([fusion])


class RecordingModel(GenericFakeChatModel):
    """A fake outer model that records what it was sent."""

    seen: ClassVar[list[list[BaseMessage]]] = []

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
async def test_provider_fields_of_the_outer_message_go_back_to_it(
    scripted_server: ScriptedOpenAIServer, mode: str
) -> None:
    thinking = {"reasoning_content": "step by step", "signature": "sig-1"}
    outer = RecordingModel(
        messages=iter(
            [
                AIMessage(
                    "",
                    additional_kwargs=thinking,
                    tool_calls=[{"name": "fusion", "args": {"prompt": QUESTION}, "id": "c1"}],
                ),
                AIMessage("the answer"),
            ]
        )
    )
    RecordingModel.seen = []
    llm = chat(scripted_server, outer_model=outer)
    message = await run(llm, mode, QUESTION)
    assert message.content == "the answer"
    replayed = RecordingModel.seen[-1][-2]
    assert isinstance(replayed, AIMessage)
    assert replayed.additional_kwargs == thinking


@pytest.mark.parametrize("mode", MODES)
async def test_the_forced_path_shows_the_model_what_the_panel_answered(
    scripted_server: ScriptedOpenAIServer, mode: str
) -> None:
    conversation = [HumanMessage(QUESTION), AIMessage("Shall I ask the panel?")]
    await run(chat(scripted_server, tool_choice="required"), mode, conversation)
    (panel,) = scripted_server.requests_for("panel-a")
    assert panel.body["messages"][-1]["content"] == QUESTION
    (answer,) = outer_requests(scripted_server)
    calls = [m for m in answer.body["messages"] if m.get("tool_calls")]
    (shown,) = [json.loads(c["function"]["arguments"]) for c in calls[-1]["tool_calls"]]
    assert shown == {"prompt": QUESTION}


def test_one_model_is_one_usage_entry(scripted_server: ScriptedOpenAIServer) -> None:
    concrete = ModelScript(response_model="vendor/model-1", cost_per_token=0.001)
    scripted_server.set_script("panel-a", concrete)
    scripted_server.set_script(JUDGE, concrete)
    graph = create_fusion_graph(
        {"analysis_models": PANEL, "model": JUDGE, "tools": []},
        backend=backend_for(scripted_server),
        outer_model=JUDGE,
    )
    result = graph.invoke({"messages": [HumanMessage(QUESTION)]})["result"]
    assert set(result.usage.by_model) == {"vendor/model-1", "panel-b"}
    spent = sum(r.body and 1 for r in scripted_server.requests if r.model in ("panel-a", JUDGE))
    assert spent == 3  # panelist, judge and synthesis, all one model
    assert result.usage.by_model["vendor/model-1"].total_tokens == (
        result.usage.total.total_tokens - result.usage.by_model["panel-b"].total_tokens
    )


@pytest.mark.parametrize("mode", MODES)
async def test_two_fusion_calls_in_one_message_deliberate_once(
    scripted_server: ScriptedOpenAIServer, mode: str
) -> None:
    scripted_server.set_script(
        OUTER,
        ModelScript(
            tool_calls=[
                {"name": "fusion", "arguments": {"prompt": QUESTION}},
                {"name": "fusion", "arguments": {"prompt": "and again"}},
            ]
        ),
    )
    await run(chat(scripted_server), mode, QUESTION)
    assert refused(scripted_server) == []
    assert len(panel_requests(scripted_server)) == len(PANEL)
    tool_messages = [
        m for m in outer_requests(scripted_server)[-1].body["messages"] if m["role"] == "tool"
    ]
    assert len(tool_messages) == 2
    assert "fusion_invocation_capped" in tool_messages[1]["content"]
    assert "fusion_invocation_capped" not in tool_messages[0]["content"]


def test_an_agent_calling_the_fusion_tool_twice_in_one_message(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    from langchain.agents import create_agent

    agent_model = "agent-model"
    scripted_server.set_script(
        agent_model,
        ModelScript(
            tool_calls=[
                {"name": "fusion", "arguments": {"prompt": QUESTION}},
                {"name": "fusion", "arguments": {"prompt": "and again"}},
            ]
        ),
    )
    fusion = FusionTool(
        analysis_models=PANEL, judge_model=JUDGE, backend=backend_for(scripted_server)
    )
    model = backend_for(scripted_server).chat_model(agent_model)
    final = agent_model_run(create_agent(model, tools=[fusion]))
    tool_messages = [m for m in final["messages"] if isinstance(m, ToolMessage)]
    assert len(tool_messages) == 2
    capped = [m for m in tool_messages if "fusion_invocation_capped" in str(m.content)]
    assert len(capped) == 1
    assert len(panel_requests(scripted_server)) == len(PANEL)
    assert refused(scripted_server) == []


def agent_model_run(agent: Any) -> Any:
    return agent.invoke({"messages": [HumanMessage(QUESTION)]})


def test_chat_fusion_passes_every_fusion_field_to_its_tool(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    from langchain_fusion.tools import FusionSettings

    llm = chat(scripted_server, anonymize_judge=True, cache_control={"type": "ephemeral"})
    setup = llm._fusion.configuration
    assert setup.anonymize_judge
    assert setup.parameters.cache_control is not None
    for name in FusionSettings.model_fields:
        if name not in ("judge_model", "preset", "backend"):
            assert getattr(llm._fusion, name) == getattr(llm, name), name
