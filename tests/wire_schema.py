"""Every byte the gateway sends, checked against the hosted API's published schemas.

`tests/openapi/openrouter.yaml` is OpenRouter's own OpenAPI document (OpenAPI 3.1, whose
schemas are JSON Schema 2020-12). `SchemaCheck` is an ASGI middleware the server tests wrap
every gateway in: it reads each response as it leaves (JSON bodies whole, SSE events one by
one) and validates it with `jsonschema` over a `referencing` registry of that document,
against the schema the document gives that route and status. What fails is kept in
`VIOLATIONS`; the autouse fixture `wire_schema_checked` (tests/conftest.py) fails the test
that caused it.

The document's `discriminator`s (`type` picks the event or the output item, as the official
SDKs read them) are applied as such: an event is checked against its own schema, so a
mistake reads as "response.created: frequency_penalty is a required property" rather than
"not valid under any of 49 schemas".
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOCUMENT = Path(__file__).parent / "openapi" / "openrouter.yaml"
BASE = "urn:openrouter:openapi"
VIOLATIONS: list[str] = []
"""What the gateways under test sent that the schemas refuse (cleared by each test)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


def _dispatch_discriminators(node: Any) -> Any:
    """`oneOf` + `discriminator.mapping` as the SDKs read it: by the named property."""
    if isinstance(node, list):
        return [_dispatch_discriminators(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _dispatch_discriminators(value) for key, value in node.items()}
    discriminator = node.get("discriminator")
    if isinstance(discriminator, dict) and discriminator.get("mapping") and "oneOf" in node:
        name, mapping = discriminator["propertyName"], discriminator["mapping"]
        # No enum of the known values here: an `allOf` extends a base union (the Responses
        # result adds server-tool items to OpenAI's), which JSON Schema cannot override.
        # `check_event` refuses an unknown event type itself.
        node.pop("oneOf")
        node["required"] = sorted({*node.get("required", []), name})
        node["allOf"] = [
            *node.get("allOf", []),
            *(
                {"if": {"properties": {name: {"const": value}}}, "then": {"$ref": target}}
                for value, target in mapping.items()
            ),
        ]
    return node


@functools.cache
def _document() -> dict[str, Any]:
    with DOCUMENT.open() as file:
        raw = yaml.load(file, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    document: dict[str, Any] = _dispatch_discriminators(raw)
    return document


@functools.cache
def _validator(pointer: str) -> jsonschema.Draft202012Validator:
    resource: Resource[Any] = DRAFT202012.create_resource(_document())
    registry: Registry[Any] = Registry().with_resource(BASE, resource)
    return jsonschema.Draft202012Validator({"$ref": f"{BASE}#{pointer}"}, registry=registry)


@functools.cache
def _stream_union(pointer: str) -> dict[str, str]:
    """A stream's event union, type → the event's schema (empty for Chat Completions,
    whose chunks have one schema)."""
    node: Any = _document()
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/")]
    if "$ref" in node:  # the route's stream schema, e.g. ResponsesStreamingResponse
        node = _document()["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    data = node.get("properties", {}).get("data", {}).get("$ref", "")
    union = _mappings().get(data.removeprefix("#/components/schemas/"), {})
    return dict(union)


@functools.cache
def _mappings() -> dict[str, dict[str, str]]:
    schemas = _document()["components"]["schemas"]
    return {
        name: schema["discriminator"]["mapping"]
        for name, schema in schemas.items()
        if isinstance(schema.get("discriminator"), dict) and "mapping" in schema["discriminator"]
    }


@functools.cache
def _event_types() -> frozenset[str]:
    union = _document()["components"]["schemas"]["StreamEvents"]
    return frozenset(union["discriminator"]["mapping"])


def problems(schema: str, instance: Any) -> list[str]:
    """Why `instance` is not a valid `components/schemas/<schema>` (empty when it is)."""
    return _problems(f"/components/schemas/{schema}", instance)


def _problems(pointer: str, instance: Any, within: tuple[str, ...] = ()) -> list[str]:
    """Each problem as `path: message`; `within` prefixes the path (`data` of an event)."""
    out = []
    for error in _validator(pointer).iter_errors(instance):
        deepest = jsonschema.exceptions.best_match([error])
        where = "/".join([*within, *(str(part) for part in deepest.absolute_path)]) or "(root)"
        out.append(f"{where}: {deepest.message}")
    return list(dict.fromkeys(out))  # an `allOf` of a base and its extension says it twice


def _operation(path: str, method: str) -> str | None:
    """The document's operation for a gateway path (`/v1/...` is its `/...`)."""
    route = path.removeprefix("/v1")
    operation = _document()["paths"].get(route, {}).get(method.lower())
    return None if operation is None else f"/paths/{route.replace('/', '~1')}/{method.lower()}"


def _response_schema(operation: str, status: int, media: str) -> str | None:
    node = _document()
    for part in operation.strip("/").split("/"):
        node = node[part.replace("~1", "/")]
    responses = node.get("responses", {})
    if str(status) not in responses:
        return None
    if media not in responses[str(status)].get("content", {}):
        return None
    return f"{operation}/responses/{status}/content/{media.replace('/', '~1')}/schema"


AVAILABILITY_CODES = {
    "model_not_found": 400,
    "wrong_endpoint": 400,
    "no_endpoints": 404,
    "model_deprecated": 404,
    "model_unavailable_upstream": 404,
    "capacity_exhausted": 429,
    "temporarily_unavailable": 503,
    "region_restricted": 403,
    "privacy_restricted": 404,
    "constraint_filtered": 404,
    "free_variant_ended": 404,
}
"""The hosted availability codes and their HTTP status (OpenRouterTeam/docs,
`api_reference/errors-and-debugging.mdx`, "Availability codes", at the pinned commit)."""
AVAILABILITY = {
    "type": "object",
    "required": ["code", "retryable", "requested_models", "docs_url"],
    "additionalProperties": False,
    "properties": {
        "code": {"enum": sorted(AVAILABILITY_CODES)},
        "retryable": {"type": "boolean"},
        "retry_after": {"type": ["number", "null"]},
        "requested_models": {"type": "array", "items": {"type": "string"}},
        "affected_providers": {"type": ["array", "null"], "items": {"type": "string"}},
        "excluded_by": {
            "type": "array",
            "items": {
                "enum": [
                    "geo",
                    "data_region",
                    "data_policy:zdr",
                    "data_policy:training",
                    "max_price",
                    "context_length",
                    "require_parameters",
                    "quantization",
                    "allowed_providers",
                ]
            },
        },
        "fallback_models": {"type": "array", "items": {"type": "string"}},
        "constraint": {
            "type": "object",
            "required": ["field", "detail"],
            "properties": {"field": {"type": "string"}, "detail": {"type": "string"}},
        },
        "docs_url": {"type": "string", "minLength": 1},
    },
}
"""The `availability` object as the same page types it (`type AvailabilityError`): the
pinned openapi.yaml has no schema for it. Fields not applicable are omitted, never empty."""


def availability_problems(instance: Any, status: int | None = None) -> list[str]:
    """Why the `availability` of an error body, chunk or event breaks the hosted type (and,
    for a whole body, why its HTTP status is not its code's)."""
    if not isinstance(instance, dict):
        return []
    error = instance.get("error")
    found = error.get("availability") if isinstance(error, dict) else None
    if found is None and instance.get("type") == "error":
        found = instance.get("availability")  # a Responses `error` event
    if found is None:
        return []
    validator = jsonschema.Draft202012Validator(AVAILABILITY)
    out = [f"availability: {e.message}" for e in validator.iter_errors(found)]
    code = found.get("code") if isinstance(found, dict) else None
    if status is not None and code in AVAILABILITY_CODES and AVAILABILITY_CODES[code] != status:
        out.append(f"availability {code} answered with {status}, not {AVAILABILITY_CODES[code]}")
    return out


def check_body(path: str, method: str, status: int, media: str, body: bytes) -> list[str]:
    """Why a whole JSON body sent for `method path` with `status` breaks the schema."""
    operation = _operation(path, method)
    if status < 400 and (operation is None or method != "POST"):
        return []  # our own routes (models, key, health) are not the hosted ones
    try:
        instance = json.loads(body)
    except ValueError as error:
        return [f"the body is not JSON: {error}"]
    if operation is None:  # an error on a route the hosted API does not have
        operation = "/paths/~1chat~1completions/post"
    pointer = _response_schema(operation, status, "application/json")
    if pointer is None and status >= 400:  # a status the route does not list: its 400's
        pointer = _response_schema(operation, 400, "application/json")
    if pointer is None:
        return [f"the hosted API documents no {status} answer for {method} {path}"]
    return _problems(pointer, instance) + availability_problems(instance, status)


def check_event(path: str, name: str | None, data: str) -> list[str]:
    """Why one SSE event sent on `path` breaks the schema of that route's stream."""
    if data == "[DONE]":
        return []
    operation = _operation(path, "POST")
    if operation is None:
        return [f"an event stream on a route the hosted API does not stream: {path}"]
    try:
        instance = json.loads(data)
    except ValueError as error:
        return [f"an event whose data is not JSON: {error}"]
    pointer = _response_schema(operation, 200, "text/event-stream")
    if pointer is None:
        return [f"the hosted API documents no event stream for POST {path}"]
    kind = instance.get("type") if isinstance(instance, dict) else None
    target = _stream_union(pointer).get(kind) if isinstance(kind, str) else None
    if target is not None:  # straight to the event's own schema, as the SDKs dispatch
        found = _problems(target.removeprefix("#"), instance, within=("data",))
    else:
        framed = {"data": instance} if name is None else {"data": instance, "event": name}
        found = _problems(pointer, framed)
    if path.endswith("/responses") and kind is not None and kind not in _event_types():
        found.append(f"{kind!r} is no event type of the hosted Responses stream")
    if name is not None and kind is not None and name != kind:
        found.append(f"the SSE event name {name!r} is not the data's type {kind!r}")
    found += availability_problems(instance)
    label = kind or "chunk"
    return [f"{label}: {problem}" for problem in found]


def sse_events(buffer: str) -> tuple[list[tuple[str | None, str]], str]:
    """The complete events in `buffer` as (event name, data), and what is left over."""
    events = []
    normalised = buffer.replace("\r\n", "\n")
    *complete, rest = normalised.split("\n\n")
    for block in complete:
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue  # a comment: a keep-alive ping
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data:
            events.append((name, "\n".join(data)))
    return events, rest


class SchemaCheck:
    """ASGI middleware: validates every response of the wrapped app as it is sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        state: dict[str, Any] = {"status": 0, "media": "", "body": b"", "sse": ""}

        def report(found: list[str]) -> None:
            VIOLATIONS.extend(f"{method} {path} {state['status']}: {p}" for p in found)

        async def checked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                headers = dict(message.get("headers", []))
                state["media"] = headers.get(b"content-type", b"").decode().split(";")[0]
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if state["media"] == "text/event-stream":
                    events, state["sse"] = sse_events(state["sse"] + chunk.decode())
                    for name, data in events:
                        report(check_event(path, name, data))
                else:
                    state["body"] += chunk
                    if not message.get("more_body") and state["media"] == "application/json":
                        report(
                            check_body(path, method, state["status"], state["media"], state["body"])
                        )
            await send(message)

        await self.app(scope, receive, checked_send)


def wrap(app: Any) -> Any:
    """`app` (a Starlette app) with every response checked."""
    app.add_middleware(SchemaCheck)
    return app


@pytest.fixture(autouse=True)
def wire_schema_checked() -> Iterator[None]:
    """Fails a test whose gateway sent a body or event the hosted schemas refuse."""
    VIOLATIONS.clear()
    yield
    found, VIOLATIONS[:] = list(dict.fromkeys(VIOLATIONS)), []
    assert not found, "the gateway sent what the hosted openapi.yaml refuses:\n" + "\n".join(
        found[:30]
    )
