"""Copies behave as their fields say: `model_copy(update=...)`, `with_config` and
`configurable_fields` on `ChatFusion` and `FusionTool`, counted at the scripted server.

Both are built on first use from their current fields (graph, panel, outer model), and
anew for a copy whose fields hold other objects; the old names of two fields still work,
with a `DeprecationWarning`.
"""

from __future__ import annotations

import pytest
from langchain_core.runnables import ConfigurableField

from langchain_fusion import ChatFusion, FusionTool
from langchain_fusion.testing import ScriptedOpenAIServer
from tests.test_chat_fusion import QUESTION, chat
from tests.test_tool import fusion_tool, tool_call


def called(server: ScriptedOpenAIServer, *models: str) -> dict[str, int]:
    return {model: len(server.requests_for(model)) for model in models}


def test_a_chat_copy_with_another_panel_calls_that_panel(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    llm = chat(scripted_server, tool_choice="required")
    llm.invoke(QUESTION)  # built and used before the copy
    assert called(scripted_server, "panel-a", "panel-b", "panel-c") == {
        "panel-a": 1,
        "panel-b": 1,
        "panel-c": 0,
    }
    copy = llm.model_copy(update={"analysis_models": ["panel-c"], "panel_temperature": 0.9})
    copy.invoke(QUESTION)
    assert called(scripted_server, "panel-a", "panel-b", "panel-c") == {
        "panel-a": 1,
        "panel-b": 1,
        "panel-c": 1,
    }
    (request,) = scripted_server.requests_for("panel-c")
    assert request.body["temperature"] == 0.9
    assert [seat.label for seat in copy.configuration.panel] == ["panel-c"]
    # The original is untouched by its copy.
    assert [seat.label for seat in llm.configuration.panel] == ["panel-a", "panel-b"]
    llm.invoke(QUESTION)
    assert called(scripted_server, "panel-a", "panel-c") == {"panel-a": 2, "panel-c": 1}


def test_a_chat_copy_with_another_outer_temperature_sends_it(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    llm = chat(scripted_server, tool_choice="required", temperature=0.1)
    llm.invoke(QUESTION)
    llm.model_copy(update={"temperature": 0.6}).invoke(QUESTION)
    outer = [r.body["temperature"] for r in scripted_server.requests_for("outer-o")]
    assert outer == [0.1, 0.6]


def test_a_tool_copy_with_another_panel_calls_that_panel(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    tool = fusion_tool(scripted_server)
    tool.invoke(tool_call())
    copy = tool.model_copy(update={"analysis_models": ["panel-c"], "panel_temperature": 1.1})
    message = copy.invoke(tool_call())
    assert [r.model for r in message.artifact.responses] == ["panel-c"]
    assert called(scripted_server, "panel-a", "panel-b", "panel-c") == {
        "panel-a": 1,
        "panel-b": 1,
        "panel-c": 1,
    }
    assert scripted_server.requests_for("panel-c")[0].body["temperature"] == 1.1
    assert copy.configuration.parameters.temperature == 1.1
    assert tool.configuration.parameters.temperature is None


def test_with_config_runs_the_same_configuration(scripted_server: ScriptedOpenAIServer) -> None:
    llm = chat(scripted_server, tool_choice="required")
    llm.with_config(tags=["mine"]).invoke(QUESTION)
    llm.model_copy(update={"analysis_models": ["panel-c"]}).with_config(tags=["x"]).invoke(QUESTION)
    assert called(scripted_server, "panel-a", "panel-c") == {"panel-a": 1, "panel-c": 1}


def test_configurable_fields_choose_the_panel_per_call(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    llm = chat(scripted_server, tool_choice="required").configurable_fields(
        analysis_models=ConfigurableField(id="panel")
    )
    llm.invoke(QUESTION, config={"configurable": {"panel": ["panel-c"]}})
    assert called(scripted_server, "panel-a", "panel-c") == {"panel-a": 0, "panel-c": 1}
    llm.invoke(QUESTION)
    assert called(scripted_server, "panel-a", "panel-c") == {"panel-a": 1, "panel-c": 1}


def test_construction_calls_nothing_and_still_refuses_bad_parameters(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    chat(scripted_server)
    fusion_tool(scripted_server)
    assert scripted_server.requests == []
    with pytest.raises(ValueError, match=r"temperature = 3\.0.*0 to 2"):
        chat(scripted_server, panel_temperature=3.0)
    with pytest.raises(ValueError, match=r"max_tool_calls = 0.*1 to 16"):
        fusion_tool(scripted_server, max_tool_calls=0)


def test_the_old_names_still_work_with_a_warning(scripted_server: ScriptedOpenAIServer) -> None:
    with pytest.warns(DeprecationWarning, match="use panel_temperature"):
        tool = fusion_tool(scripted_server, temperature=0.4)
    assert tool.panel_temperature == 0.4
    assert tool.configuration.parameters.temperature == 0.4
    with pytest.warns(DeprecationWarning, match="use panel_temperature"):
        assert tool.temperature == 0.4
    with pytest.warns(DeprecationWarning, match="use server_tools"):
        llm = chat(scripted_server, tools=[])
    assert llm.server_tools == []
    assert llm.configuration.parameters.tools == []
    # `temperature` keeps its one meaning on ChatFusion: the outer model's.
    assert ChatFusion(temperature=0.3).temperature == 0.3
    assert FusionTool(panel_temperature=0.3).configuration.parameters.temperature == 0.3
