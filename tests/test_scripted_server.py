"""Tests of the scripted OpenAI-compatible server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletionMessageFunctionToolCall
from pydantic import BaseModel, Field

from langchain_fusion.testing import ModelScript, RecordedRequest, ScriptedOpenAIServer
from langchain_fusion.testing.pytest_plugin import ScriptedServerFactory

# Typed Any: the SDKs want TypedDicts, and these literals are fine at runtime.
QUESTION: Any = [{"role": "user", "content": "What is X?"}]
# One client for the module: building an httpx client costs ~25 ms (SSL context).
HTTP = httpx.Client(timeout=5)


@pytest.fixture(scope="module", autouse=True)
def _close_http_client() -> Iterator[None]:
    yield
    HTTP.close()


def chat(server: ScriptedOpenAIServer, **body: Any) -> httpx.Response:
    """POST a chat completion with httpx; ``messages`` defaults to one question."""
    body.setdefault("messages", QUESTION)
    return HTTP.post(f"{server.base_url}/chat/completions", json=body)


def stream_events(server: ScriptedOpenAIServer, **body: Any) -> list[Any]:
    """POST a streaming chat completion and return the parsed ``data:`` payloads."""
    body.setdefault("messages", QUESTION)
    body["stream"] = True
    events: list[Any] = []
    url = f"{server.base_url}/chat/completions"
    with HTTP.stream("POST", url, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else json.loads(data))
    return events


def merge(chunks: list[Any]) -> AIMessageChunk:
    """Add up streamed LangChain message chunks."""
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert isinstance(merged, AIMessageChunk)
    return merged


def sdk(server: ScriptedOpenAIServer, **kwargs: Any) -> openai.OpenAI:
    """An `openai` client for the server that never retries."""
    return openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0, **kwargs)


# -- content -----------------------------------------------------------------------------


def test_default_reply_is_deterministic_and_differs_per_model(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    first = chat(scripted_server, model="model-a").json()
    again = chat(scripted_server, model="model-a").json()
    other = chat(scripted_server, model="model-b").json()

    text = first["choices"][0]["message"]["content"]
    assert text == again["choices"][0]["message"]["content"]
    assert text.startswith("[model-a] On 'What is X?':")
    assert 30 <= len(text.split()) <= 60
    other_text = other["choices"][0]["message"]["content"]
    assert other_text.startswith("[model-b] On 'What is X?':")
    # Different phrasing, not just a different prefix.
    assert other_text.removeprefix("[model-b]") != text.removeprefix("[model-a]")
    assert first["object"] == "chat.completion"
    assert first["model"] == "model-a"
    assert first["system_fingerprint"]
    assert first["choices"][0]["finish_reason"] == "stop"
    assert first["id"] != again["id"]
    words = len(text.split())  # one streamed token per word
    assert first["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": words,
        "total_tokens": 3 + words,
    }


def test_content_parts_and_script_reply(scripted_server_factory: ScriptedServerFactory) -> None:
    server = scripted_server_factory(
        {
            "fixed": ModelScript(reply="Fixed answer.", response_model="vendor/fixed-2025"),
            "echo": ModelScript(reply=lambda body: f"saw {len(body['messages'])} messages"),
        }
    )
    parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Part one"}, {"type": "text", "text": "two?"}],
        }
    ]
    default = chat(server, model="anything", messages=parts).json()
    assert default["choices"][0]["message"]["content"].startswith("[anything] On 'Part one two?':")
    assert default["usage"]["prompt_tokens"] == 3

    fixed = chat(server, model="fixed").json()
    assert fixed["choices"][0]["message"]["content"] == "Fixed answer."
    assert fixed["model"] == "vendor/fixed-2025"
    echo = chat(server, model="echo", messages=[*QUESTION, *QUESTION]).json()
    assert echo["choices"][0]["message"]["content"] == "saw 2 messages"


def test_stream_deltas_join_to_the_full_text_and_usage_arrives(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    reply = "\n  Leading space,\n\ttabs and   runs of spaces.\n\nEnd "
    server = scripted_server_factory({"shaped": ModelScript(reply=reply)})
    for model in ("shaped", "model-a"):
        full = chat(server, model=model).json()
        events = stream_events(server, model=model, stream_options={"include_usage": True})

        assert events[-1] == "[DONE]"
        chunks = events[:-1]
        assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        deltas = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
        assert "".join(deltas) == full["choices"][0]["message"]["content"]
        assert len([d for d in deltas if d]) > 5
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"] == full["usage"]
    assert "".join(deltas) != reply  # the second model used its default reply

    # Without include_usage there is no usage chunk.
    plain = stream_events(server, model="shaped")
    assert all(chunk["choices"] for chunk in plain[:-1])
    assert all("usage" not in chunk for chunk in plain[:-1])
    assert server.requests_for("shaped")[-1].response_text == reply


class Citation(BaseModel):
    source: str = Field(max_length=12)
    page: int = Field(ge=3, le=9)


class Verdict(BaseModel):
    winner: Literal["b", "a"]
    confidence: float = Field(gt=0.5, lt=1.0)
    reasons: list[str] = Field(min_length=2, max_length=3)
    citations: list[Citation] = Field(max_length=1)
    summary: str = Field(min_length=30, max_length=40)
    note: str | None = None
    approved: bool


def json_schema_format(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"type": "json_schema", "json_schema": {"name": model.__name__, "schema": schema}}


def test_json_schema_answer_is_generated_to_fit_the_schema(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    response_format = json_schema_format(Verdict)
    assert "$defs" in response_format["json_schema"]["schema"]
    first = chat(scripted_server, model="judge-x", response_format=response_format).json()
    content = first["choices"][0]["message"]["content"]

    verdict = Verdict.model_validate_json(content)
    assert verdict.winner == "b"
    assert len(verdict.reasons) == 2  # minItems wins over "one item"
    assert len(verdict.citations) == 1  # min(1, maxItems)
    assert len(verdict.citations[0].source) <= 12
    assert verdict.citations[0].page == 3
    assert 30 <= len(verdict.summary) <= 40
    assert 0.5 < verdict.confidence < 1.0
    assert all("judge-x" in reason for reason in verdict.reasons)
    again = chat(scripted_server, model="judge-x", response_format=response_format).json()
    assert again["choices"][0]["message"]["content"] == content

    json_object = chat(scripted_server, model="judge-x", response_format={"type": "json_object"})
    parsed = json.loads(json_object.json()["choices"][0]["message"]["content"])
    assert parsed["model"] == "judge-x"


class TreeNode(BaseModel):
    name: str
    children: list[TreeNode] = Field(default_factory=list)
    parent: TreeNode | None = None


def test_json_schema_answer_for_a_recursive_model_stays_small(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    body = chat(scripted_server, model="m", response_format=json_schema_format(TreeNode)).json()
    tree = json.loads(body["choices"][0]["message"]["content"])
    # Recursion stops at the first repeat: only required fields below it.
    leaf = {"name": "m: name"}
    assert tree == {"name": "m: name", "children": [leaf], "parent": leaf}
    TreeNode.model_validate(tree)


def test_json_reply_str_is_sent_verbatim_and_dict_is_serialised(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    broken = 'The winner is panel 2 {"winner": '
    server = scripted_server_factory(
        {
            "prose": ModelScript(json_reply=broken),
            "dict": ModelScript(json_reply={"winner": "a", "score": 3}),
            "fn": ModelScript(json_reply=lambda body: {"n": len(body["messages"])}),
        }
    )
    response_format = json_schema_format(Verdict)
    prose = chat(server, model="prose", response_format=response_format).json()
    assert prose["choices"][0]["message"]["content"] == broken
    events = stream_events(server, model="prose", response_format=response_format)
    deltas = [e["choices"][0]["delta"].get("content") or "" for e in events[:-1]]
    assert "".join(deltas) == broken
    as_dict = chat(server, model="dict", response_format=response_format).json()
    assert json.loads(as_dict["choices"][0]["message"]["content"]) == {"winner": "a", "score": 3}
    from_fn = chat(server, model="fn", response_format={"type": "json_object"}).json()
    assert json.loads(from_fn["choices"][0]["message"]["content"]) == {"n": 1}
    # Without response_format the same model answers with text.
    assert not chat(server, model="dict").json()["choices"][0]["message"]["content"].startswith("{")


def test_empty_completion(scripted_server_factory: ScriptedServerFactory) -> None:
    server = scripted_server_factory(default=ModelScript(empty=True))
    body = chat(server, model="quiet").json()
    assert body["choices"][0]["message"]["content"] == ""
    assert body["usage"]["completion_tokens"] == 0
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] == 3
    events = stream_events(server, model="quiet")
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1]) == ""
    assert server.requests[0].response_text == ""


def test_stop_sequences_cut_the_answer(scripted_server_factory: ScriptedServerFactory) -> None:
    server = scripted_server_factory(
        {"fixed": ModelScript(reply="one two three four five"), "json": ModelScript()}
    )
    cut = chat(server, model="fixed", stop=["zzz", "four", "three"]).json()
    assert cut["choices"][0]["message"]["content"] == "one two "
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["usage"]["completion_tokens"] == 2  # what was sent, not what was scripted
    assert server.requests[-1].response_text == "one two "
    as_string = chat(server, model="fixed", stop="two").json()
    assert as_string["choices"][0]["message"]["content"] == "one "
    events = stream_events(server, model="fixed", stop=["four"])
    deltas = [e["choices"][0]["delta"].get("content") or "" for e in events[:-1]]
    assert "".join(deltas) == "one two three "
    # Empty or missing stop sequences change nothing; an answer that starts with one is empty.
    whole = chat(server, model="fixed", stop=[""]).json()
    assert whole["choices"][0]["message"]["content"] == "one two three four five"
    assert (
        chat(server, model="fixed", stop=["one"]).json()["choices"][0]["message"]["content"] == ""
    )
    # JSON answers are cut too, as a real model's would be.
    response_format = json_schema_format(Citation)
    body = chat(server, model="json", response_format=response_format, stop=['"page"']).json()
    assert body["choices"][0]["message"]["content"] == '{"source": "json: source", '

    llm = ChatOpenAI(base_url=server.base_url, api_key="test", model="fixed", max_retries=0)
    assert llm.invoke("Count.", stop=["three"]).content == "one two "
    assert "".join(str(c.content) for c in llm.stream("Count.", stop=["three"])) == "one two "


# -- faults ------------------------------------------------------------------------------


def test_rate_limit_429_with_retry_after_via_openai_sdk(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    server = scripted_server_factory({"model-a": ModelScript(status_code=429, retry_after=2.5)})
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(server).chat.completions.create(model="model-a", messages=QUESTION)
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "2.5"
    assert error.body == {
        "message": "scripted failure: 429 rate limited for model-a",
        "type": "rate_limit_error",
        "param": None,
        "code": 429,
    }
    (recorded,) = server.requests
    assert recorded.status_code == 429
    assert recorded.completed_at is not None
    assert recorded.response_text is None


def test_fail_first_then_success_and_set_script_restarts_the_count(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    server = scripted_server_factory({"flaky": ModelScript(status_code=503, fail_first=2)})
    codes = [chat(server, model="flaky").status_code for _ in range(4)]
    assert codes == [503, 503, 200, 200]
    assert chat(server, model="other").status_code == 200  # counters are per model

    server.set_script("flaky", ModelScript(fail_first=1))
    assert [chat(server, model="flaky").status_code for _ in range(2)] == [500, 200]
    server.reset()
    assert server.requests == []
    assert [chat(server, model="flaky").status_code for _ in range(2)] == [500, 200]


def test_status_500_for_every_request(scripted_server_factory: ScriptedServerFactory) -> None:
    server = scripted_server_factory(default=ModelScript(status_code=500))
    response = chat(server, model="broken")
    assert response.status_code == 500
    assert response.json()["error"]["message"] == (
        "scripted failure: 500 internal server error for broken"
    )
    assert "retry-after" not in response.headers
    with pytest.raises(openai.InternalServerError):
        sdk(server).chat.completions.create(model="broken", messages=QUESTION)
    assert [r.status_code for r in server.requests] == [500, 500]


def test_error_rate_is_deterministic_per_seed(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    script = ModelScript(error_rate=0.5, seed=7)
    first = scripted_server_factory({"m": script})
    second = scripted_server_factory({"m": script})
    codes_first = [chat(first, model="m").status_code for _ in range(12)]
    codes_second = [chat(second, model="m").status_code for _ in range(12)]
    rng = random.Random(7)
    expected = [500 if rng.random() < 0.5 else 200 for _ in range(12)]
    assert codes_first == codes_second == expected
    assert {200, 500} <= set(codes_first)


def test_hang_times_out_the_client_and_stop_is_quick() -> None:
    server = ScriptedOpenAIServer({"stuck": ModelScript(hang=True)}).start()
    try:
        with pytest.raises(httpx.ReadTimeout):
            HTTP.post(
                f"{server.base_url}/chat/completions",
                json={"model": "stuck", "messages": QUESTION},
                timeout=0.5,
            )
    finally:
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.0
    (recorded,) = server.requests
    assert recorded.model == "stuck"
    assert recorded.status_code == 0
    assert recorded.first_byte_at is None
    assert recorded.completed_at is None


async def test_stop_is_quick_while_a_client_still_waits_on_a_hang() -> None:
    server = ScriptedOpenAIServer(default=ModelScript(hang=True)).start()
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            waiting = asyncio.create_task(
                client.post(
                    f"{server.base_url}/chat/completions",
                    json={"model": "stuck", "messages": QUESTION},
                )
            )
            for _ in range(200):  # the request must be in before stopping
                if server.requests:
                    break
                await asyncio.sleep(0.01)
            started = time.monotonic()
            await asyncio.to_thread(server.stop)
            assert time.monotonic() - started < 1.0
            response = await waiting
    finally:
        server.stop()  # a no-op unless an assertion above failed
    assert response.status_code == 503  # the server says it is going away
    assert server.requests[0].completed_at is None


def test_malformed_body_makes_the_openai_sdk_raise(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    server = scripted_server_factory(default=ModelScript(malformed_body=True))
    client = sdk(server)
    with pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(model="garbled", messages=QUESTION)
    with pytest.raises(json.JSONDecodeError):
        for _ in client.chat.completions.create(
            model="garbled",
            messages=QUESTION,
            stream=True,
        ):
            pass
    assert [r.status_code for r in server.requests] == [200, 200]


def test_bad_requests_get_400_with_a_clear_error(scripted_server: ScriptedOpenAIServer) -> None:
    url = f"{scripted_server.base_url}/chat/completions"
    not_json = HTTP.post(url, content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert "not valid JSON" in not_json.json()["error"]["message"]
    no_model = HTTP.post(url, json={"messages": QUESTION})
    assert no_model.status_code == 400
    assert no_model.json()["error"]["param"] == "model"
    no_messages = HTTP.post(url, json={"model": "m"})
    assert no_messages.status_code == 400
    assert "'messages' is required" in no_messages.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError):
        sdk(scripted_server).chat.completions.create(model="m", messages=[])
    unknown = HTTP.get(f"{scripted_server.base_url}/embeddings")
    assert unknown.status_code == 404
    assert [r.status_code for r in scripted_server.requests] == [400, 400, 400, 400, 404]


def test_script_validation() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        ModelScript(error_rate=2.0)
    with pytest.raises(ValueError, match="status_code"):
        ModelScript(status_code=200)
    with pytest.raises(ValueError, match="tokens_per_second"):
        ModelScript(tokens_per_second=0)
    with pytest.raises(ValueError, match="tool_calls must be a list or 'auto'"):
        ModelScript(tool_calls="always")  # type: ignore[arg-type]


# -- tools -------------------------------------------------------------------------------

TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]
SEARCH = ModelScript(
    tool_calls=[
        {"name": "search", "arguments": {"query": "what is x"}},
        {"name": "search", "arguments": {"query": "x definition"}},
    ]
)
TOOL_OUTPUT = "X is a placeholder name used in examples. " * 5


def test_tool_calls_then_text_after_the_tool_result(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    server = scripted_server_factory(
        {"agent": SEARCH, "eager": dataclasses.replace(SEARCH, tool_policy="always")}
    )
    client = sdk(server)
    first = client.chat.completions.create(model="agent", messages=QUESTION, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [c.id for c in calls] == ["call_1", "call_2"]
    functions = [c.function for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]
    assert [f.name for f in functions] == ["search", "search"]
    assert json.loads(functions[0].arguments) == {"query": "what is x"}

    history = [
        *QUESTION,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "call_1", "content": "ignored"},
        {"role": "tool", "tool_call_id": "call_2", "content": TOOL_OUTPUT},
    ]
    second = client.chat.completions.create(model="agent", messages=history, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    text = second.choices[0].message.content or ""
    assert text.startswith("[agent] On 'What is X?':")
    assert text.endswith("The tool returned: " + TOOL_OUTPUT[:77].rstrip() + "...")

    again = client.chat.completions.create(model="eager", messages=history, tools=TOOLS)
    assert [c.id for c in again.choices[0].message.tool_calls or []] == ["call_3", "call_4"]
    # No tools in the request: a plain answer even though the script has tool calls.
    plain = client.chat.completions.create(model="agent", messages=QUESTION)
    assert plain.choices[0].message.tool_calls is None


def test_tool_calls_streamed(scripted_server_factory: ScriptedServerFactory) -> None:
    server = scripted_server_factory({"agent": SEARCH})
    stream = sdk(server).chat.completions.create(
        model="agent",
        messages=QUESTION,
        tools=TOOLS,
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
    assert finish == "tool_calls"
    assert calls[0] == {"id": "call_1", "name": "search", "arguments": '{"query": "what is x"}'}
    assert calls[1]["id"] == "call_2"
    assert json.loads(calls[1]["arguments"]) == {"query": "x definition"}


def test_chat_openai_tool_calls(scripted_server_factory: ScriptedServerFactory) -> None:
    @tool
    def search(query: str) -> str:
        """Search the web."""
        return query

    server = scripted_server_factory({"agent": SEARCH})
    llm = ChatOpenAI(base_url=server.base_url, api_key="test", model="agent", max_retries=0)
    message = llm.bind_tools([search]).invoke("What is X?")
    assert [c["args"] for c in message.tool_calls] == [
        {"query": "what is x"},
        {"query": "x definition"},
    ]
    merged = merge(list(llm.bind_tools([search]).stream("What is X?")))
    assert [c["id"] for c in merged.tool_calls] == ["call_1", "call_2"]
    assert merged.tool_calls[1]["args"] == {"query": "x definition"}


def function_tool(name: str, properties: dict[str, Any] | None = None, **extra: Any) -> Any:
    parameters = {"type": "object", "properties": properties or {}, **extra}
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


AUTO = ModelScript(tool_calls="auto")
WEATHER = function_tool("get_weather", {"location": {"type": "string"}}, required=["location"])
ADDER = function_tool(
    "my_adder",
    {"a": {"type": "integer"}, "b": {"type": "integer"}, "scale": {"type": "number"}},
)


def auto_call(server: ScriptedOpenAIServer, text: str, tools: Any, **body: Any) -> Any:
    """The one automatic call answered to ``text``: ``(name, arguments)``."""
    messages = [{"role": "user", "content": text}]
    response = chat(server, model="auto", messages=messages, tools=tools, **body).json()
    choice = response["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    return call["function"]["name"], json.loads(call["function"]["arguments"])


def test_auto_tool_calls_pick_the_tool_the_message_mentions(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    server = scripted_server_factory({"auto": AUTO})
    tools = [function_tool("fusion", {"prompt": {"type": "string"}}), ADDER, WEATHER]
    # Words of the name count ("weather" for get_weather); none: the first tool.
    assert auto_call(server, "Weather in Oslo?", tools)[0] == "get_weather"
    assert auto_call(server, "Hello!", tools) == ("fusion", {"prompt": "Hello!"})
    # The whole name beats words of other names; a longer name is not a mention of a shorter.
    twins = [function_tool("magic_function"), function_tool("magic_function_no_args")]
    assert auto_call(server, "Run magic_function_no_args().", twins)[0] == "magic_function_no_args"
    assert auto_call(server, "Run magic_function(1).", twins[::-1])[0] == "magic_function"
    # camelCase names are split into words too; case does not matter.
    camel = [WEATHER, function_tool("TellJoke", {"topic": {"type": "string"}})]
    assert auto_call(server, "A JOKE, please.", camel)[0] == "TellJoke"
    # A named tool_choice wins over any mention.
    named = {"type": "function", "function": {"name": "my_adder"}}
    assert auto_call(server, "Weather in Oslo?", tools, tool_choice=named)[0] == "my_adder"


def test_auto_tool_call_arguments_come_from_the_schema_and_the_message(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    server = scripted_server_factory({"auto": AUTO})
    # Numbers fill integer and number parameters in order; what is left is generated.
    assert auto_call(server, "What is 3 + 4?", [ADDER]) == (
        "my_adder",
        {"a": 3, "b": 4, "scale": 0.0},
    )
    args = auto_call(server, "Not x-9, v1.2 or 1.2.3: add -2, 7 and 2.5.", [ADDER])[1]
    assert args == {"a": -2, "b": 7, "scale": 2.5}
    # Quoted phrases fill string parameters in order; an apostrophe opens no quote.
    customer = function_tool(
        "create_customer",
        {
            "name": {"type": "string"},
            "city": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "note": {"type": "string"},
            "email": {"type": "string", "format": "email"},
            "tier": {"type": "string", "enum": ["gold", "silver"]},
        },
    )
    text = "Create a customer named '你好啊集团' in \"Zürich\"; it's urgent."
    assert auto_call(server, text, [customer])[1] == {
        "name": "你好啊集团",
        "city": "Zürich",
        "note": "auto: note",
        "email": "auto@example.com",
        "tier": "gold",
    }
    # Without quotes the first string parameter takes the whole message.
    assert auto_call(server, "Weather in Oslo?", [WEATHER])[1] == {"location": "Weather in Oslo?"}
    assert auto_call(server, "Go.", [function_tool("no_args")]) == ("no_args", {})
    # A value that breaks the parameter's bounds is not used: the generated one stays.
    short = function_tool("short", {"text": {"type": "string", "maxLength": 5}})
    assert auto_call(server, "Far too long for it.", [short])[1] == {"text": "auto:"}


def test_auto_tool_calls_follow_tool_choice_and_the_policy(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    server = scripted_server_factory(
        {"auto": AUTO, "eager": dataclasses.replace(AUTO, tool_policy="always")}
    )
    after_result = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]

    def answer(model: str, messages: Any = QUESTION, **body: Any) -> Any:
        response = chat(server, model=model, messages=messages, tools=[WEATHER], **body).json()
        return response["choices"][0]

    # first_turn: a call, then text once a tool result follows the user's message.
    assert answer("auto")["finish_reason"] == "tool_calls"
    text = answer("auto", after_result)
    assert text["finish_reason"] == "stop"
    assert text["message"]["content"].endswith("The tool returned: sunny")
    assert answer("auto", after_result, tool_choice="auto")["finish_reason"] == "stop"
    # "required" and a named tool force a call whatever the policy; "none" forbids one.
    again = answer("auto", after_result, tool_choice="required")
    assert again["finish_reason"] == "tool_calls"
    assert again["message"]["tool_calls"][0]["id"] == "call_2"  # numbered after call_1
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert answer("auto", after_result, tool_choice=named)["finish_reason"] == "tool_calls"
    assert answer("auto", tool_choice="none")["finish_reason"] == "stop"
    assert answer("eager", after_result)["finish_reason"] == "tool_calls"
    # No tools: text.
    plain = chat(server, model="auto").json()["choices"][0]
    assert plain["finish_reason"] == "stop"
    assert "tool_calls" not in plain["message"]


def test_chat_openai_auto_tool_calls_invoke_and_stream(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    class MagicInput(BaseModel):
        input: int = Field(gt=-1000, lt=1000)

    @tool(args_schema=MagicInput)
    def magic_function(input: int) -> int:
        """Apply a magic function to an input."""
        return input + 2

    @tool
    def get_weather(location: str) -> str:
        """Get the weather at a location."""
        return "sunny"

    server = scripted_server_factory(default=AUTO)
    llm = ChatOpenAI(base_url=server.base_url, api_key="test", model="outer", max_retries=0)
    bound = llm.bind_tools([get_weather, magic_function], tool_choice="any")
    prompt = "What is the value of magic_function(3)? Use the tool."
    message = bound.invoke(prompt)
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("magic_function", {"input": 3})
    ]
    merged = merge(list(bound.stream(prompt)))
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [("magic_function", {"input": 3})]
    # Nothing in "Hello!" to go on: the first tool, with a generated valid argument.
    forced = llm.bind_tools([magic_function, get_weather], tool_choice="any").invoke("Hello!")
    (call,) = forced.tool_calls
    assert call["name"] == "magic_function"
    MagicInput.model_validate(call["args"])


# -- latency, log, usage -----------------------------------------------------------------


def test_time_to_first_token_and_tokens_per_second(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    ten_tokens = "one two three four five six seven eight nine ten"
    server = scripted_server_factory(
        {
            "slow-start": ModelScript(time_to_first_token=0.3),
            "paced": ModelScript(reply=ten_tokens, tokens_per_second=100),
        }
    )
    started = time.monotonic()
    assert chat(server, model="slow-start").status_code == 200
    assert time.monotonic() - started >= 0.3

    started = time.monotonic()
    url = f"{server.base_url}/chat/completions"
    body = {"model": "slow-start", "messages": QUESTION, "stream": True}
    with HTTP.stream("POST", url, json=body) as response:
        assert time.monotonic() - started >= 0.3  # the headers waited too
        response.read()
    recorded = server.requests[-1]
    assert recorded.first_byte_at is not None
    assert recorded.first_byte_at - recorded.received_at >= 0.3

    for stream in (False, True):
        started = time.monotonic()
        if stream:
            events = stream_events(server, model="paced")
            assert len(events) == 13  # role, ten tokens, finish, [DONE]
        else:
            assert chat(server, model="paced").json()["usage"]["completion_tokens"] == 10
        assert time.monotonic() - started >= 0.1


async def test_request_log_headers_and_overlapping_calls(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    server = scripted_server_factory(default=ModelScript(time_to_first_token=0.3))
    headers = {"x-openrouter-fusion-depth": "1", "Authorization": "Bearer test"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=5) as client:
        responses = await asyncio.gather(
            *(
                client.post("/chat/completions", json={"model": name, "messages": QUESTION})
                for name in ("panel-a", "panel-b")
            )
        )
    assert [r.status_code for r in responses] == [200, 200]

    log = server.requests
    assert {r.model for r in log} == {"panel-a", "panel-b"}
    a, b = log
    assert all(isinstance(r, RecordedRequest) for r in log)
    assert a.completed_at is not None
    assert b.completed_at is not None
    # Served in parallel: the second arrived before the first was done.
    assert max(a.received_at, b.received_at) < min(a.completed_at, b.completed_at)
    for recorded in log:
        assert recorded.path == "/v1/chat/completions"
        assert recorded.headers["x-openrouter-fusion-depth"] == "1"
        assert recorded.headers["authorization"] == "Bearer test"
        assert recorded.body["messages"] == QUESTION
        assert recorded.stream is False
        assert recorded.status_code == 200
        assert recorded.first_byte_at is not None
        assert recorded.completed_at is not None
        assert recorded.received_at + 0.3 <= recorded.first_byte_at <= recorded.completed_at
        assert recorded.response_text is not None
        assert recorded.response_text.startswith(f"[{recorded.model}]")
    assert [r.model for r in server.requests_for("panel-b")] == ["panel-b"]


def test_cost_per_token_reports_usage_cost(scripted_server_factory: ScriptedServerFactory) -> None:
    server = scripted_server_factory({"paid": ModelScript(reply="a b c d", cost_per_token=0.5)})
    usage = chat(server, model="paid").json()["usage"]
    assert usage == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "cost": 3.5}
    events = stream_events(server, model="paid", stream_options={"include_usage": True})
    assert events[-2]["usage"]["cost"] == 3.5
    assert "cost" not in chat(server, model="free").json()["usage"]


def test_models_endpoint_lists_scripted_models(
    scripted_server_factory: ScriptedServerFactory,
) -> None:
    server = scripted_server_factory({"model-a": ModelScript(), "judge": ModelScript()})
    models = sdk(server).models.list()
    assert [m.id for m in models.data] == ["model-a", "judge"]
    assert server.requests[0].path == "/v1/models"


# -- LangChain ---------------------------------------------------------------------------


def test_chat_openai_invoke_and_stream_with_usage(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    llm = ChatOpenAI(
        base_url=scripted_server.base_url,
        api_key="test",
        model="model-a",
        max_retries=0,
        stream_usage=True,
        default_headers={"x-openrouter-fusion-depth": "1"},
    )
    message = llm.invoke("What is X?")
    assert isinstance(message.content, str)
    assert message.content.startswith("[model-a] On 'What is X?':")
    assert message.usage_metadata is not None

    chunks = list(llm.stream("What is X?"))
    merged = merge(chunks)
    assert merged.content == message.content
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["input_tokens"] == 3
    assert merged.usage_metadata["output_tokens"] == sum(1 for c in chunks if c.content)
    assert merged.usage_metadata == message.usage_metadata

    invoked, streamed = scripted_server.requests
    assert streamed.stream is True
    assert streamed.body["stream_options"] == {"include_usage": True}
    assert invoked.headers["x-openrouter-fusion-depth"] == "1"


def test_chat_openai_structured_output_against_a_generated_json_answer(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    llm = ChatOpenAI(
        base_url=scripted_server.base_url,
        api_key="test",
        model="judge",
        max_retries=0,
    )
    verdict = llm.with_structured_output(Verdict, method="json_schema").invoke("Judge these.")
    assert isinstance(verdict, Verdict)
    assert verdict.winner == "b"
    (recorded,) = scripted_server.requests
    assert recorded.body["response_format"]["type"] == "json_schema"


def test_two_servers_at_once(scripted_server_factory: ScriptedServerFactory) -> None:
    one = scripted_server_factory(default=ModelScript(reply="from one"))
    two = scripted_server_factory(default=ModelScript(reply="from two"))
    assert one.port != two.port
    assert one.base_url.startswith("http://127.0.0.1:")
    assert chat(one, model="m").json()["choices"][0]["message"]["content"] == "from one"
    assert chat(two, model="m").json()["choices"][0]["message"]["content"] == "from two"
    assert len(one.requests) == len(two.requests) == 1
