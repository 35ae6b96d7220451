"""The scripted server's strict mode, over real HTTP: what it refuses, in whose words.

Every rule of `langchain_fusion.testing.validation` has cases below, each sent four
ways (httpx and the `openai` SDK, plain and streamed) and answered with OpenAI's exact
400 body. Valid conversations (parallel calls answered in any order, tool loops,
OpenRouter's server tools, every ``tool_choice``) must still be answered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from langchain_fusion.testing.pytest_plugin import ScriptedServerFactory
from langchain_fusion.testing.validation import CHECKS

HTTP = httpx.Client(timeout=5)


@pytest.fixture(scope="module", autouse=True)
def _close_http_client() -> Iterator[None]:
    yield
    HTTP.close()


@pytest.fixture(scope="module")
def strict_server() -> Iterator[ScriptedOpenAIServer]:
    """One strict server for the refusal table: refusals change no server state."""
    with ScriptedOpenAIServer() as server:
        yield server


# -- conversations -----------------------------------------------------------------------

USER: Any = {"role": "user", "content": "Weather in Oslo and Paris?"}
LATER: Any = {"role": "user", "content": "And tomorrow?"}
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEB_SEARCH: Any = {"type": "openrouter:web_search"}


def call(call_id: str, arguments: Any = '{"city": "Oslo"}', **function: Any) -> Any:
    """One wire-format tool call to get_weather (``function`` overrides its fields)."""
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments, **function},
    }


def asks(*calls: Any, **extra: Any) -> Any:
    """An assistant message making ``calls``."""
    return {"role": "assistant", "content": None, "tool_calls": list(calls), **extra}


def answer(call_id: str, content: str = "sunny") -> Any:
    """A tool message answering ``call_id``."""
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def function_tool(name: str) -> Any:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def without(message: Any, key: str) -> Any:
    return {name: value for name, value in message.items() if name != key}


@dataclass(frozen=True)
class Case:
    """A request one rule refuses, and OpenAI's error for it."""

    rule: str
    request: dict[str, Any]
    message: str
    param: str | None
    code: str | None

    @property
    def error(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "type": "invalid_request_error",
            "param": self.param,
            "code": self.code,
        }


def unanswered(ids: str, index: int) -> tuple[str, str, None]:
    message = (
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        f"{ids}"
    )
    return message, f"messages.[{index}].role", None


def orphan(index: int) -> tuple[str, str, None]:
    message = (
        "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
        "message with 'tool_calls'."
    )
    return message, f"messages.[{index}].role", None


def missing(param: str) -> tuple[str, str, str]:
    return f"Missing required parameter: '{param}'.", param, "missing_required_parameter"


NULL_CONTENT = "Invalid value for 'content': expected a string, got null."
ROLES = "'system', 'assistant', 'user', 'function', 'tool', and 'developer'"
NOT_AN_OBJECT = "arguments must be a valid JSON object string."
PATTERN = "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."


def case(rule: str, messages: list[Any], error: tuple[Any, ...], **request: Any) -> Any:
    return pytest.param(Case(rule, {"messages": messages, **request}, *error), id=rule)


CASES = [
    # A tool call left without its tool message, before the conversation moves on.
    case(
        "tool_calls_are_answered",
        [USER, asks(call("a"), call("b")), answer("a"), LATER],
        unanswered("b", 1),
        tools=[WEATHER],
    ),
    case(
        "tool_calls_are_answered",
        [USER, asks(call("a"), call("b")), LATER],
        unanswered("a, b", 1),
        tools=[WEATHER],
    ),
    case("tool_calls_are_answered", [USER, asks(call("a"))], unanswered("a", 1)),
    case(
        "tool_calls_are_answered", [USER, asks(call("a")), LATER, answer("a")], unanswered("a", 1)
    ),
    case(
        "tool_calls_are_answered",
        [USER, asks(call("a")), answer("a"), LATER, asks(call("b"), content="Checking.")],
        unanswered("b", 4),
    ),
    # A tool message that answers no call just made, or answers one twice.
    case("tool_messages_answer_a_call", [USER, answer("a")], orphan(1)),
    case(
        "tool_messages_answer_a_call", [USER, asks(call("a")), answer("a"), answer("z")], orphan(3)
    ),
    case(
        "tool_messages_answer_a_call", [USER, asks(call("a")), answer("a"), answer("a")], orphan(3)
    ),
    case(
        "tool_messages_answer_a_call",
        [
            USER,
            asks(call("a")),
            answer("a"),
            {"role": "assistant", "content": "Sunny."},
            answer("a"),
        ],
        orphan(4),
    ),
    # tool_choice.
    case(
        "tool_choice_names_a_declared_function",
        [USER],
        (
            "Invalid value for 'function_call': no function named 'get_time' was specified in "
            "the 'functions' parameter.",
            "function_call",
            None,
        ),
        tools=[WEATHER, WEB_SEARCH],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    ),
    *(
        case(
            "tool_choice_needs_tools",
            [USER],
            (
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified.",
                "tool_choice",
                None,
            ),
            tool_choice=choice,
        )
        for choice in ("auto", "none", {"type": "function", "function": {"name": "get_weather"}})
    ),
    case(
        "tool_choice_is_well_formed",
        [USER],
        (
            "Invalid value: 'any'. Supported values are: 'none', 'auto', and 'required'.",
            "tool_choice",
            "invalid_value",
        ),
        tools=[WEATHER],
        tool_choice="any",
    ),
    case(
        "tool_choice_is_well_formed",
        [USER],
        missing("tool_choice.function"),
        tools=[WEATHER],
        tool_choice={"type": "function"},
    ),
    case(
        "tool_choice_is_well_formed",
        [USER],
        missing("tool_choice.function.name"),
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {}},
    ),
    case(
        "tool_choice_is_well_formed",
        [USER],
        (
            "Invalid type for 'tool_choice': expected one of one of 'none', 'auto', or "
            "'required' or object, but got an integer instead.",
            "tool_choice",
            "invalid_type",
        ),
        tools=[WEATHER],
        tool_choice=7,
    ),
    # Malformed messages.
    case("message_roles_are_known", [without(USER, "role")], missing("messages[0].role")),
    case(
        "message_roles_are_known",
        [USER, {"role": "bot", "content": "Hi."}],
        (
            f"Invalid value: 'bot'. Supported values are: {ROLES}.",
            "messages[1].role",
            "invalid_value",
        ),
    ),
    case(
        "messages_have_content",
        [without(USER, "content")],
        (NULL_CONTENT, "messages.[0].content", None),
    ),
    case(
        "messages_have_content",
        [{"role": "system", "content": None}, USER],
        (NULL_CONTENT, "messages.[0].content", None),
    ),
    case(
        "messages_have_content",
        [USER, asks(call("a")), without(answer("a"), "content")],
        (NULL_CONTENT, "messages.[2].content", None),
    ),
    case(
        "messages_have_content",
        [USER, {"role": "assistant", "content": None}, LATER],
        (NULL_CONTENT, "messages.[1].content", None),
    ),
    case("messages_have_content", [{"role": "developer"}, USER], missing("messages[0].content")),
    case(
        "messages_have_content",
        [{"role": "developer", "content": None}, USER],
        (
            "Invalid type for 'messages[0].content': expected one of a string or array of "
            "objects, but got null instead.",
            "messages[0].content",
            "invalid_type",
        ),
    ),
    case(
        "tool_messages_name_their_call",
        [USER, asks(call("a")), without(answer("a"), "tool_call_id")],
        missing("messages[2].tool_call_id"),
    ),
    case(
        "assistant_tool_calls_are_well_formed",
        [USER, asks(without(call("a"), "id")), answer("a")],
        missing("messages[1].tool_calls[0].id"),
    ),
    case(
        "assistant_tool_calls_are_well_formed",
        [USER, asks(without(call("a"), "type")), answer("a")],
        missing("messages[1].tool_calls[0].type"),
    ),
    case(
        "assistant_tool_calls_are_well_formed",
        [
            USER,
            asks(call("a"), {"id": "b", "type": "function", "function": {"arguments": "{}"}}),
            answer("a"),
            answer("b"),
        ],
        missing("messages[1].tool_calls[1].function.name"),
    ),
    case(
        "assistant_tool_calls_are_well_formed",
        [
            USER,
            asks({"id": "a", "type": "function", "function": {"name": "get_weather"}}),
            answer("a"),
        ],
        missing("messages[1].tool_calls[0].function.arguments"),
    ),
    case(
        "assistant_tool_calls_are_well_formed",
        [USER, asks(call("a", arguments={"city": "Oslo"})), answer("a")],
        (
            "Invalid type for 'messages[1].tool_calls[0].function.arguments': expected a string, "
            "but got an object instead.",
            "messages[1].tool_calls[0].function.arguments",
            "invalid_type",
        ),
    ),
    case(
        "assistant_tool_calls_are_well_formed",
        [USER, asks(content="Hm."), LATER],
        (
            "Invalid 'messages[1].tool_calls': empty array. Expected an array with minimum "
            "length 1, but got an empty array instead.",
            "messages[1].tool_calls",
            "empty_array",
        ),
    ),
    case(
        "tool_call_arguments_are_json_objects",
        [USER, asks(call("a", arguments="{city: Oslo")), answer("a")],
        (
            f"Invalid 'messages[1].tool_calls[0].function.arguments': {NOT_AN_OBJECT}",
            "messages[1].tool_calls[0].function.arguments",
            "invalid_value",
        ),
    ),
    case(
        "tool_call_arguments_are_json_objects",
        [USER, asks(call("a"), call("b", arguments='["Oslo"]')), answer("a"), answer("b")],
        (
            f"Invalid 'messages[1].tool_calls[1].function.arguments': {NOT_AN_OBJECT}",
            "messages[1].tool_calls[1].function.arguments",
            "invalid_value",
        ),
    ),
    # Malformed tools.
    case(
        "tools_are_well_formed",
        [USER],
        (
            "Invalid 'tools': empty array. Expected an array with minimum length 1, but got an "
            "empty array instead.",
            "tools",
            "empty_array",
        ),
        tools=[],
    ),
    case(
        "tools_are_well_formed",
        [USER],
        (
            "Invalid value: 'web_search'. Supported values are: 'function' and 'custom'.",
            "tools[1].type",
            "invalid_value",
        ),
        tools=[WEATHER, {"type": "web_search"}],
    ),
    case(
        "tools_are_well_formed", [USER], missing("tools[0].type"), tools=[without(WEATHER, "type")]
    ),
    case(
        "tools_are_well_formed", [USER], missing("tools[0].function"), tools=[{"type": "function"}]
    ),
    case(
        "tools_are_well_formed",
        [USER],
        missing("tools[0].function.name"),
        tools=[{"type": "function", "function": {"parameters": {"type": "object"}}}],
    ),
    case(
        "tool_names_are_unique",
        [USER],
        ("tools: Tool names must be unique.", "tools", None),
        tools=[WEATHER, WEB_SEARCH, WEATHER],
    ),
    case(
        "function_names_are_valid",
        [USER],
        (
            "Invalid 'tools[1].function.name': string does not match pattern. " + PATTERN,
            "tools[1].function.name",
            "invalid_value",
        ),
        tools=[WEATHER, function_tool("get weather")],
    ),
    case(
        "function_names_are_valid",
        [USER],
        (
            "Invalid 'tools[0].function.name': string does not match pattern. " + PATTERN,
            "tools[0].function.name",
            "invalid_value",
        ),
        tools=[function_tool("weather.get")],
    ),
    case(
        "function_names_are_valid",
        [USER],
        (
            "Invalid 'tools[0].function.name': string too long. Expected a string with maximum "
            "length 64, but got a string with length 65 instead.",
            "tools[0].function.name",
            "string_above_max_length",
        ),
        tools=[function_tool("x" * 65)],
    ),
    case(
        "function_names_are_valid",
        [USER],
        (
            "Invalid 'tools[0].function.name': empty string. Expected a string with minimum "
            "length 1, but got an empty string instead.",
            "tools[0].function.name",
            "empty_string",
        ),
        tools=[function_tool("")],
    ),
]


def refused_by_httpx(server: ScriptedOpenAIServer, request: dict[str, Any], stream: bool) -> Any:
    body = {"model": "gpt-4o", **request, "stream": stream}
    response = HTTP.post(f"{server.base_url}/chat/completions", json=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    return response.json()["error"]


def refused_by_sdk(server: ScriptedOpenAIServer, request: dict[str, Any], stream: bool) -> Any:
    client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", stream=stream, **request)
    assert caught.value.status_code == 400
    return caught.value.body


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("send", [refused_by_httpx, refused_by_sdk], ids=["httpx", "openai"])
@pytest.mark.parametrize("refused", CASES)
def test_strict_server_refuses_what_providers_refuse_in_their_words(
    strict_server: ScriptedOpenAIServer, refused: Case, send: Any, stream: bool
) -> None:
    assert send(strict_server, refused.request, stream) == refused.error
    logged = strict_server.requests[-1]
    assert (logged.status_code, logged.error, logged.stream) == (400, refused.error, stream)
    assert logged.response_text is None


def test_every_rule_has_refusal_cases() -> None:
    covered = {param.values[0].rule for param in CASES}
    assert covered == {check.__name__ for check in CHECKS}


def test_permissive_server_answers_what_strict_refuses(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    server = scripted_server_factory(strict=False)
    for param in CASES:
        refused: Case = param.values[0]
        body = {"model": "gpt-4o", **refused.request}
        response = HTTP.post(f"{server.base_url}/chat/completions", json=body)
        assert response.status_code == 200, (refused.rule, response.text)
    assert {r.status_code for r in server.requests} == {200}
    assert server.strict is False


# -- refusals come first, and change nothing ---------------------------------------------

ORPHAN: Any = {"model": "m", "messages": [USER, answer("call_1")]}


def test_refusal_comes_before_latency_hangs_and_malformed_bodies(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    server = scripted_server_factory(
        {
            "slow": ModelScript(time_to_first_token=60),
            "stuck": ModelScript(hang=True),
            "garbled": ModelScript(malformed_body=True),
        }
    )
    url = f"{server.base_url}/chat/completions"
    for model in ("slow", "stuck", "garbled"):
        # Were the scripted behaviour first, these would time out or parse as garbage.
        response = HTTP.post(url, json={**ORPHAN, "model": model}, timeout=5)
        assert response.status_code == 400
        assert response.json()["error"]["message"] == orphan(1)[0]
    assert [(r.model, r.status_code) for r in server.requests] == [
        ("slow", 400),
        ("stuck", 400),
        ("garbled", 400),
    ]


def test_refusal_is_not_an_attempt_of_fail_first(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    server = scripted_server_factory({"flaky": ModelScript(status_code=503, fail_first=1)})
    url = f"{server.base_url}/chat/completions"
    refused = HTTP.post(url, json={**ORPHAN, "model": "flaky"})
    valid = {"model": "flaky", "messages": [USER]}
    codes = [HTTP.post(url, json=valid).status_code for _ in range(2)]
    assert (refused.status_code, codes) == (400, [503, 200])
    errors = [r.error for r in server.requests]
    assert errors[0] is not None
    assert errors[0]["code"] is None  # OpenAI's refusals carry their own code
    assert errors[1] == {
        "message": "scripted failure: 503 service unavailable for flaky",
        "type": "server_error",
        "param": None,
        "code": 503,
    }
    assert errors[2] is None


# -- what strict mode accepts ------------------------------------------------------------

PARALLEL = ModelScript(
    tool_calls=[
        {"name": "get_weather", "arguments": {"city": "Oslo"}},
        {"name": "get_weather", "arguments": {"city": "Paris"}},
    ]
)


def accepted(server: ScriptedOpenAIServer, stream: bool = False, **request: Any) -> Any:
    """Send ``request`` with httpx and return the assistant message it was answered with."""
    body = {"model": "gpt-4o", **request, "stream": stream}
    url = f"{server.base_url}/chat/completions"
    if not stream:
        response = HTTP.post(url, json=body)
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]
    text, calls = "", 0
    with HTTP.stream("POST", url, json=body) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                delta = json.loads(line.removeprefix("data: "))["choices"]
                if delta:
                    text += delta[0]["delta"].get("content") or ""
                    calls += len(delta[0]["delta"].get("tool_calls") or [])
    return {"content": text, "streamed_tool_call_deltas": calls}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_parallel_tool_calls_answered_in_any_order_are_accepted(
    strict_server: ScriptedOpenAIServer, stream: bool
) -> None:
    both = asks(call("a"), call("b", arguments='{"city": "Paris"}'))
    for answers in ([answer("a"), answer("b", "rain")], [answer("b", "rain"), answer("a")]):
        message = accepted(strict_server, stream, messages=[USER, both, *answers], tools=[WEATHER])
        last = answers[-1]["content"]
        assert message["content"].endswith(f"The tool returned: {last}")


def test_every_tool_choice_is_accepted_with_tools(strict_server: ScriptedOpenAIServer) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    for choice in ("auto", "none", "required", named):
        assert accepted(strict_server, messages=[USER], tools=[WEATHER], tool_choice=choice)
    assert {r.status_code for r in strict_server.requests[-4:]} == {200}


def test_openrouter_server_tools_are_accepted(strict_server: ScriptedOpenAIServer) -> None:
    search = {"type": "openrouter:web_search", "parameters": {"max_results": 3}}
    for tools in ([WEB_SEARCH], [search, WEATHER], [WEATHER, {"type": "openrouter:datetime"}]):
        assert accepted(strict_server, messages=[USER], tools=tools, tool_choice="auto")


def test_valid_message_shapes_are_accepted(strict_server: ScriptedOpenAIServer) -> None:
    shapes: list[Any] = [
        [{"role": "developer", "content": "Be brief."}, USER],
        [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, USER],
        [{"role": "user", "content": ""}],  # empty content is content
        [{"role": "user", "content": []}],
        [USER, {"role": "assistant", "content": "", "tool_calls": [call("a")]}, answer("a")],
        [USER, {"role": "assistant", "refusal": "I can't help with that."}, LATER],
        [USER, asks(call("a", arguments="{}")), answer("a", "")],
        [USER, asks(call("a")), {**answer("a"), "content": [{"type": "text", "text": "ok"}]}],
    ]
    for messages in shapes:
        assert accepted(strict_server, messages=messages, tools=[WEATHER])
    custom = {"type": "custom", "custom": {"name": "grammar_tool"}}
    assert accepted(strict_server, messages=[USER], tools=[WEATHER, custom])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_multi_turn_tool_loop_with_the_openai_sdk(
    scripted_server_factory: ScriptedServerFactory, stream: bool
) -> None:
    server = scripted_server_factory(default=PARALLEL)
    client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    history: list[Any] = []
    for question in ("Weather in Oslo and Paris?", "And tomorrow?"):
        history.append({"role": "user", "content": question})
        calls = _sdk_turn(client, history, stream)
        assert len(calls) == 2
        history.append({"role": "assistant", "content": None, "tool_calls": calls})
        history += [answer(c["id"], f"{c['id']}: sunny") for c in reversed(calls)]
        assert _sdk_turn(client, history, stream) == []  # text after the tool results
        history.append({"role": "assistant", "content": "Sunny in both."})
    assert [r.status_code for r in server.requests] == [200] * 4
    assert [c["id"] for c in history[-4]["tool_calls"]] == ["call_3", "call_4"]


def _sdk_turn(client: openai.OpenAI, history: list[Any], stream: bool) -> list[Any]:
    """One request; the tool calls it answered with, in the wire format."""
    if not stream:
        response = client.chat.completions.create(model="agent", messages=history, tools=[WEATHER])
        calls = response.choices[0].message.tool_calls or []
        return [c.model_dump(exclude_none=True) for c in calls]
    merged: dict[int, Any] = {}
    for chunk in client.chat.completions.create(
        model="agent", messages=history, tools=[WEATHER], stream=True
    ):
        deltas = chunk.choices[0].delta.tool_calls if chunk.choices else None
        for delta in deltas or []:
            item = merged.setdefault(delta.index, call("", arguments=""))
            item["id"] += delta.id or ""
            if delta.function is not None:
                item["function"]["arguments"] += delta.function.arguments or ""
    return [merged[index] for index in sorted(merged)]


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_chat_openai_tool_loop_with_parallel_calls(
    scripted_server_factory: ScriptedServerFactory, stream: bool
) -> None:
    server = scripted_server_factory(default=PARALLEL)
    llm = ChatOpenAI(base_url=server.base_url, api_key="test", model="agent", max_retries=0)
    bound = llm.bind_tools([get_weather])

    def turn(history: list[BaseMessage]) -> AIMessage:
        if not stream:
            reply = bound.invoke(history)
            assert isinstance(reply, AIMessage)
            return reply
        chunks = list(bound.stream(history))
        merged = chunks[0]
        for chunk in chunks[1:]:
            merged += chunk
        return AIMessage(content=merged.content, tool_calls=merged.tool_calls)

    history: list[BaseMessage] = []
    for question in ("Weather in Oslo and Paris?", "And tomorrow?"):
        history.append(HumanMessage(question))
        asked = turn(history)
        history.append(asked)
        for tool_call in reversed(asked.tool_calls):  # answered out of order
            output = get_weather.invoke(tool_call["args"])
            history.append(ToolMessage(output, tool_call_id=tool_call["id"]))
        final = turn(history)
        assert final.tool_calls == []
        assert str(final.content).endswith("The tool returned: sunny in Oslo")
        history.append(final)
    assert [r.status_code for r in server.requests] == [200] * 4


def test_langchain_agent_runs_its_tool_loop(scripted_server_factory: ScriptedServerFactory) -> None:
    server = scripted_server_factory(default=PARALLEL)
    llm = ChatOpenAI(base_url=server.base_url, api_key="test", model="agent", max_retries=0)
    agent = create_agent(llm, tools=[get_weather])
    result = agent.invoke({"messages": [HumanMessage("Weather in Oslo and Paris?")]})
    outputs = [m.content for m in result["messages"] if isinstance(m, ToolMessage)]
    assert sorted(outputs) == ["sunny in Oslo", "sunny in Paris"]
    assert [r.status_code for r in server.requests] == [200, 200]
