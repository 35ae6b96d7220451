"""Schema-driven fuzzing of both routes (issue 18, point 7): requests generated from the
hosted request schemas of the pinned `tests/openapi/openrouter.yaml` (`ChatRequest` for
`/chat/completions`, `ResponsesRequest` for `/responses`), seeded and bounded. For every
one: no 5xx, the hosted error shape on errors, and no upstream call for a refused one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from test_server_support import error_of, healthy, start

from langchain_fusion.testing import ScriptedOpenAIServer

SPEC = Path(__file__).parent / "openapi" / "openrouter.yaml"
# libyaml's loader where it is built in: the pure-Python one takes seconds on this file.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SCHEMAS: dict[str, Any] = yaml.load(SPEC.read_text(), Loader=_LOADER)["components"]["schemas"]
MODELS = [None, "openrouter/fusion", "openrouter/fusion-flash", "vendor/plain"]
"""The generated model (None), an alias, a plain model: every route inside the gateway."""
INLINE_DEPTH = 2
"""How deep `$ref`s are inlined; deeper ones accept any value (generation stays fast)."""
_DROPPED = {"discriminator", "example", "examples", "description", "deprecated", "title"}
FUZZ = settings(
    max_examples=50,
    derandomize=True,  # seeded: the same requests on every run
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _inline(node: Any, depth: int = 0, seen: tuple[str, ...] = ()) -> Any:
    """`node` with its `$ref`s inlined (a recursive or very deep one becomes `{}`, any
    value), for `hypothesis-jsonschema`, which reads one self-contained schema."""
    if isinstance(node, list):
        return [_inline(item, depth, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen or depth > INLINE_DEPTH:
            return {}
        return _inline(SCHEMAS[name], depth + 1, (*seen, name))
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {name: _inline(item, depth + 1, seen) for name, item in value.items()}
        else:
            out[key] = _inline(value, depth, seen)
    return out


def _requests(schema: str) -> st.SearchStrategy[dict[str, Any]]:
    def with_model(pair: tuple[dict[str, Any], str | None]) -> dict[str, Any]:
        body, model = pair
        return body if model is None else {**body, "model": model}

    generated = from_schema(_inline(SCHEMAS[schema]))
    return st.tuples(generated, st.sampled_from(MODELS)).map(with_model)


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[httpx.Client, ScriptedOpenAIServer]]:
    with (
        ScriptedOpenAIServer(default=healthy()) as upstream,
        start(upstream) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as client,
    ):
        yield client, upstream


def _check(client: httpx.Client, upstream: ScriptedOpenAIServer, path: str, body: Any) -> None:
    upstream.reset()
    content = json.dumps(body).encode()  # lone surrogates included, escaped
    response = client.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code < 500, (body, response.text)
    if response.status_code == 200 and "text/event-stream" in response.headers["content-type"]:
        return
    if response.status_code >= 400:
        error = error_of(response)
        metadata = error.get("metadata") or {}
        from_upstream = "upstream" in metadata or "upstream_status" in metadata
        if not from_upstream:  # refused by the gateway: it cost nothing
            assert upstream.requests == [], (body, response.text)


@FUZZ
@given(body=_requests("ChatRequest"))
def test_generated_chat_requests(
    gateway: tuple[httpx.Client, ScriptedOpenAIServer], body: dict[str, Any]
) -> None:
    _check(*gateway, "/chat/completions", body)


@FUZZ
@given(body=_requests("ResponsesRequest"))
def test_generated_responses_requests(
    gateway: tuple[httpx.Client, ScriptedOpenAIServer], body: dict[str, Any]
) -> None:
    _check(*gateway, "/responses", body)
