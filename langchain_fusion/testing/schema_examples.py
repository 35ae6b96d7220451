"""An example value that validates against a JSON schema, the same every run.

`schema_example` is the one entry point: JSON answers (``response_format``) and the
arguments of automatic tool calls both come from it. Strings name the model and the
spot they fill ("judge: summary"), so a test can tell which model wrote what.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from typing import Any

from langchain_fusion.testing.script import JsonDict

__all__ = ["schema_example", "stable_digest"]


def schema_example(model: str, schema: JsonDict, label: str) -> Any:
    """A value valid for ``schema``, built for ``model``; ``label`` names the top spot."""
    return _SchemaExample(model, schema).value(schema, label)


def stable_digest(text: str) -> bytes:
    """SHA-256 of ``text``: unlike hash(), the same in every process."""
    return hashlib.sha256(text.encode()).digest()


class _SchemaExample:
    """Builds a deterministic value that validates against a JSON schema.

    Everything is filled in (all properties, one array item) until a ``$ref`` recurs
    on the current path; from there on only what the schema requires is generated,
    so recursive models (trees) stay small.
    """

    def __init__(self, model: str, root: JsonDict) -> None:
        self._model = model
        self._root = root

    def value(
        self,
        schema: Any,
        label: str,
        refs: frozenset[str] = frozenset(),
        minimal: bool = False,
    ) -> Any:
        """An example for ``schema``; ``label`` names the spot (used in strings).

        ``refs`` are the ``$ref``s being expanded on the way here; ``minimal`` is set
        once one of them recurs.
        """
        if not isinstance(schema, dict):
            return self._string({}, label)  # `true` and other odd schemas accept anything
        if "$ref" in schema:
            ref = schema["$ref"]
            return self.value(self._resolve(ref), label, refs | {ref}, minimal or ref in refs)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                return self.value(self._pick(schema[key], minimal), label, refs, minimal)
        if schema.get("allOf"):
            parts = [self.value(part, label, refs, minimal) for part in schema["allOf"]]
            if all(isinstance(part, dict) for part in parts):
                merged: JsonDict = {}
                for part in parts:
                    merged.update(part)
                return merged
            return parts[0]
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            if "properties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                kind = "string"
        if kind == "object":
            return self._object(schema, refs, minimal)
        if kind == "array":
            return self._array(schema, label, refs, minimal)
        if kind in ("integer", "number"):
            return _number(schema, integer=kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(schema, label)

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(f"only local $refs are supported, not {ref!r}")
        node: Any = self._root
        for part in ref.lstrip("#").split("/"):
            if part:
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _pick(self, options: list[Any], minimal: bool) -> Any:
        non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        if not non_null or (minimal and len(non_null) < len(options)):
            return {"type": "null"}
        return non_null[0]

    def _object(self, schema: JsonDict, refs: frozenset[str], minimal: bool) -> JsonDict:
        properties: JsonDict = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        return {
            name: self.value(sub, name, refs, minimal)
            for name, sub in properties.items()
            if not minimal or name in required
        }

    def _array(
        self, schema: JsonDict, label: str, refs: frozenset[str], minimal: bool
    ) -> list[Any]:
        prefix = schema.get("prefixItems") or []
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        wanted = 0 if minimal else min(1, int(high) if high is not None else 1)
        count = max(low, wanted, len(prefix) if high is None else min(len(prefix), int(high)))
        items = schema.get("items", {})
        values = []
        for i in range(count):
            item = prefix[i] if i < len(prefix) else items
            values.append(self.value(item, f"{label} {i + 1}", refs, minimal))
        return values

    def _string(self, schema: JsonDict, label: str) -> str:
        fmt = schema.get("format")
        if fmt == "date-time":
            return "2024-01-01T00:00:00Z"
        if fmt == "date":
            return "2024-01-01"
        if fmt == "time":
            return "00:00:00Z"
        if fmt == "email":
            return f"{_slug(self._model)}@example.com"
        if fmt in ("uri", "url"):
            return f"https://example.com/{_slug(self._model)}"
        if fmt == "uuid":
            return str(uuid.UUID(bytes=stable_digest(self._model)[:16]))
        text = f"{self._model}: {label}"
        low = int(schema.get("minLength", 0))
        filler = f" {label or 'x'}"
        while len(text) < low:
            text += filler
        high = schema.get("maxLength")
        return text if high is None else text[: int(high)]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


def _number(schema: JsonDict, integer: bool) -> int | float:
    """``minimum`` (or 0), moved inside any exclusive bounds and ``maximum``."""
    low, high = schema.get("minimum"), schema.get("maximum")
    xlow, xhigh = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    value: float = 0
    if low is not None:
        value = low
    elif xlow is not None:
        value = xlow + 1
    if high is not None and value > high:
        value = high
    if xhigh is not None and value >= xhigh:
        floor = low if low is not None else xlow if xlow is not None else xhigh - 2
        value = xhigh - 1 if integer else (floor + xhigh) / 2
    step = schema.get("multipleOf")
    if step:
        value = math.ceil(value / step) * step
    return math.ceil(value) if integer else float(value)
