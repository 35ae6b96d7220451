"""A client's mistake is a 400 (or 413) in the hosted shape before any upstream call, on
both routes (issue 18, point 4): unknown keys with "did you mean", types, non-finite
numbers, invalid Unicode, deep nesting, content part types and keys the hosted schema does
not have (Chat Completions and Responses input), an unanswered tool call, a
non-ASCII bring-your-own-key key, and typos of tool types, plugin ids and aliases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml  # type: ignore[import-untyped]
from test_server_support import QUESTION, error_of, healthy, start

from langchain_fusion.server import KeyRing, known_fields
from langchain_fusion.testing import ScriptedOpenAIServer

SPEC = Path(__file__).parent / "openapi" / "openrouter.yaml"
USER = [{"role": "user", "content": QUESTION}]
FUSION = {"model": "openrouter/fusion", "messages": USER}
RESPONSES = {"model": "openrouter/fusion", "input": QUESTION}
TOOL = {"type": "openrouter:fusion"}
PLAIN_HI = b'{"model": "vendor/plain", "messages": [{"role": "user", "content": "hi"}]'

# (path, raw body or JSON, the words the error must hold)
REFUSED: list[tuple[str, Any, str]] = [
    ("/chat/completions", {**FUSION, "tool_choise": "auto"}, "did you mean 'tool_choice'"),
    ("/chat/completions", {**FUSION, "strem": True}, "did you mean 'stream'"),
    ("/chat/completions", {**FUSION, "max_token": 10}, "did you mean 'max_tokens'"),
    ("/responses", {**RESPONSES, "max_output_token": 10}, "did you mean 'max_output_tokens'"),
    ("/chat/completions", {**FUSION, "max_tokens": "100"}, "must be an integer"),
    ("/chat/completions", {**FUSION, "max_tokens": True}, "must be an integer"),
    ("/responses", {**RESPONSES, "max_output_tokens": "100"}, "must be an integer"),
    (
        "/chat/completions",
        {"model": "vendor/plain", "messages": USER, "stream": "yes"},
        "true or false",
    ),
    (
        "/chat/completions",
        PLAIN_HI + b', "temperature": NaN}',
        "not a JSON number",
    ),
    (
        "/chat/completions",
        b'{"model": "openrouter/fusion", "messages": [{"role": "user", "content": "hi"}], '
        b'"tools": [{"type": "function", "function": {"name": "f", '
        b'"parameters": {"maximum": Infinity}}}]}',
        "not a JSON number",
    ),
    (
        "/chat/completions",
        b'{"model": "vendor/plain", "messages": [{"role": "user", "content": "\\ud800"}]}',
        "lone surrogate",
    ),
    ("/responses", b'{"model": "openrouter/fusion", "input": "\\ud800"}', "lone surrogate"),
    (
        "/chat/completions",
        b'{"model": "vendor/plain", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "nested deeper",
    ),
    (
        "/responses",
        b'{"model": "vendor/plain", "input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "nested deeper",
    ),
    (
        "/chat/completions",
        {
            **FUSION,
            "messages": [{"role": "user", "content": [{"type": "image", "source_type": "url"}]}],
        },
        "content part type 'image'",
    ),
    (
        "/chat/completions",
        {
            "model": "vendor/plain",
            "messages": [
                *USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "user", "content": "and?"},
            ],
        },
        "no tool message answering it",
    ),
    (
        "/chat/completions",
        {
            **FUSION,
            "messages": [
                *USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
            ],
        },
        "no tool message answering it",
    ),
    (
        "/chat/completions",
        {**FUSION, "model": "vendor/plain", "tools": [{"type": "openrouter:fuson"}]},
        "did you mean 'openrouter:fusion'",
    ),
    (
        "/responses",
        {**RESPONSES, "model": "vendor/plain", "tools": [{"type": "openrouter:fuson"}]},
        "did you mean 'openrouter:fusion'",
    ),
    (
        "/chat/completions",
        {**FUSION, "model": "vendor/plain", "plugins": [{"id": "fusoin"}]},
        "did you mean 'fusion'",
    ),
    (
        "/responses",
        {**RESPONSES, "model": "vendor/plain", "plugins": [{"id": "fusoin"}]},
        "did you mean 'fusion'",
    ),
    (
        "/chat/completions",
        {**FUSION, "model": "openrouter/fusoin"},
        "did you mean 'openrouter/fusion'",
    ),
    ("/responses", {**RESPONSES, "model": "openrouter/fusoin"}, "did you mean 'openrouter/fusion'"),
    (
        "/chat/completions",
        {**FUSION, "messages": [{"role": "user", "content": [{"type": "text", "txt": "hi"}]}]},
        "did you mean 'text'",
    ),
]


def _input(*parts: Any, role: str = "user", plain: bool = False) -> dict[str, Any]:
    """A Responses request whose input is one message of `parts` (then a user question)."""
    items = [{"type": "message", "role": role, "content": list(parts)}]
    if role != "user":
        items.append({"role": "user", "content": QUESTION})
    return {**RESPONSES, "model": "vendor/plain" if plain else RESPONSES["model"], "input": items}


_IMAGE = {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"}
REFUSED += [
    ("/responses", _input({"type": "image", "source_type": "url"}), "content part type 'image'"),
    (
        "/responses",
        _input({"type": "image", "source_type": "url"}, plain=True),
        "content part type 'image'",
    ),
    ("/responses", _input({"type": "text", "text": "hi"}), "content part type 'text'"),
    ("/responses", _input({"type": "input_txt", "text": "hi"}), "did you mean 'input_text'"),
    ("/responses", _input({"type": "input_text", "txt": "hi"}, plain=True), "did you mean 'text'"),
    (
        "/responses",
        _input({**_IMAGE, "detial": "auto"}),
        "did you mean 'detail'",
    ),
    ("/responses", _input({"type": "output_text", "text": "hi"}), "content part type"),
    (
        "/responses",
        _input({"type": "output_text", "text": "hi", "anotations": []}, role="assistant"),
        "did you mean 'annotations'",
    ),
    ("/responses", _input({"type": ["input_text"], "text": "hi"}), "content part type"),
    ("/responses", _input("just a string"), "content part type"),
]


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, ScriptedOpenAIServer]]:
    with ScriptedOpenAIServer(default=healthy()) as upstream, start(upstream) as server:
        yield server.base_url, upstream


@pytest.mark.parametrize(("path", "body", "words"), REFUSED, ids=[w for _, _, w in REFUSED])
def test_a_clients_mistake_is_a_400_before_any_upstream_call(
    gateway: tuple[str, ScriptedOpenAIServer], path: str, body: Any, words: str
) -> None:
    url, upstream = gateway
    upstream.reset()
    content = body if isinstance(body, bytes) else None
    response = httpx.post(
        f"{url}{path}",
        content=content,
        json=None if content is not None else body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert words in error_of(response)["message"]
    assert upstream.requests == []


def test_a_non_ascii_byok_key_is_a_400(scripted_server: ScriptedOpenAIServer) -> None:
    with start(scripted_server, keys=KeyRing(byok=True)) as server:
        response = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"model": "vendor/plain", "messages": USER},
            headers=[(b"authorization", "Bearer clé-naïve-0123456789".encode())],
            timeout=30,
        )
    assert response.status_code == 400, response.text
    assert "ASCII" in error_of(response)["message"]
    assert scripted_server.requests == []


def test_sdk_clients_sync_and_async_get_the_400(
    gateway: tuple[str, ScriptedOpenAIServer],
) -> None:
    url, upstream = gateway
    upstream.reset()
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="did you mean 'tool_choice'"):
        client.chat.completions.create(
            model="openrouter/fusion",
            messages=[{"role": "user", "content": QUESTION}],
            extra_body={"tool_choise": "auto"},
        )

    async def refused() -> None:
        aclient = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="did you mean 'openrouter/fusion'"):
            await aclient.responses.create(model="openrouter/fusoin", input=QUESTION)
        await aclient.close()

    import asyncio

    asyncio.run(refused())
    client.close()
    assert upstream.requests == []


def test_hosted_fields_this_server_ignores_are_not_refused(
    gateway: tuple[str, ScriptedOpenAIServer],
) -> None:
    url, _ = gateway
    body = {**FUSION, "tool_choice": "required", "tools": [TOOL]}
    body |= {"provider": {"sort": "price"}, "user": "u-1", "session_id": "s-1"}
    answered = httpx.post(f"{url}/chat/completions", json=body, timeout=60)
    assert answered.status_code == 200, answered.text


def _schema_sets() -> dict[str, frozenset[str]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: seconds faster
    schemas = yaml.load(SPEC.read_text(), Loader=loader)["components"]["schemas"]

    def resolve(node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = schemas[node["$ref"].rsplit("/", 1)[-1]]
        return node

    def types(node: Any) -> set[str]:
        node, found = resolve(node), set[str]()
        if not isinstance(node, dict):
            return found
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(key, []):
                found |= types(sub)
        found |= set(node.get("discriminator", {}).get("mapping", {}))
        kind = resolve(node.get("properties", {}).get("type"))
        if isinstance(kind, dict):
            found |= set(kind.get("enum", [])) | ({kind["const"]} if "const" in kind else set())
        return found

    def properties(node: Any) -> set[str]:
        node = resolve(node)
        found = set(node.get("properties", {}))
        for sub in node.get("allOf", []):
            found |= properties(sub)
        return found

    def keys_by_type(nodes: list[Any]) -> dict[str, frozenset[str]]:
        return {kind: frozenset(properties(n)) for n in nodes for kind in types(n)}

    def part_schemas(content: Any) -> list[Any]:
        branches = [resolve(content), *resolve(content).get("anyOf", [])]
        items = [b["items"] for b in branches if isinstance(b, dict) and "items" in b]
        return [sub for i in items for sub in resolve(i).get("oneOf", resolve(i).get("anyOf", []))]

    chat = schemas["ChatRequest"]["properties"]
    responses = schemas["ResponsesRequest"]["properties"]
    chat_parts = schemas["ChatContentItems"]["discriminator"]["mapping"].values()
    inputs = [
        part_schemas(resolve(schemas[name])["properties"]["content"])
        for name in ("EasyInputMessage", "InputMessageItem")
    ]
    assert keys_by_type(inputs[0]) == keys_by_type(inputs[1])
    output_message = next(
        item
        for item in schemas["Inputs"]["anyOf"][1]["items"]["anyOf"]
        if "allOf" in item and resolve(item["allOf"][0]) is schemas["OutputMessageItem"]
    )
    outputs = part_schemas(output_message["allOf"][1]["properties"]["content"])
    return {
        "CHAT_REQUEST_KEYS": frozenset(chat) | known_fields.OPENAI_CHAT_KEYS,
        "RESPONSES_REQUEST_KEYS": frozenset(responses),
        "CHAT_TOOL_TYPES": frozenset(types(chat["tools"]["items"])),
        "RESPONSES_TOOL_TYPES": frozenset(types(responses["tools"]["items"])),
        "PLUGIN_IDS": frozenset(chat["plugins"]["items"]["discriminator"]["mapping"]),
        "CHAT_PART_TYPES": frozenset(types(schemas["ChatContentItems"])),
        "CHAT_PART_KEYS": keys_by_type([{"$ref": ref} for ref in chat_parts]),
        "RESPONSES_INPUT_PART_KEYS": keys_by_type(inputs[0]),
        "RESPONSES_OUTPUT_PART_KEYS": keys_by_type(outputs),
    }


def test_the_known_fields_are_the_hosted_schemas() -> None:
    for name, expected in _schema_sets().items():
        assert getattr(known_fields, name) == expected, name
