"""A parser that heals a judge's near-miss JSON before the run declares the judge failed.

Tried in order: the text as JSON; each fenced block (```json ... ```); then every JSON
object embedded in the text (prose around it, several objects, nested ones), largest
first, and the first one that validates wins.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class HealResult(Generic[ModelT]):
    """The parsed object, or why there was none."""

    value: ModelT | None
    problem: Literal["empty", "not_json", "schema_mismatch"] | None = None
    detail: str | None = None
    how: Literal["strict", "fenced", "embedded"] | None = None


def heal_json(text: str, schema: type[ModelT]) -> HealResult[ModelT]:
    """Recover an instance of `schema` from a model's text answer.

    `problem` is `empty` for blank text, `not_json` when no JSON object can be found, and
    `schema_mismatch` when objects were found but none validates (`detail` then holds the
    validation error of the largest one).
    """
    stripped = text.strip()
    if not stripped:
        return HealResult(None, "empty", "the model returned no text")

    mismatch: str | None = None
    attempts: list[tuple[Literal["strict", "fenced"], str]] = [("strict", stripped)]
    attempts += [("fenced", block.strip()) for block in _FENCE.findall(stripped)]
    for how, candidate in attempts:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        value, error = _validate(data, schema)
        if value is not None:
            return HealResult(value, how=how)
        mismatch = mismatch or error

    objects = _embedded_objects(stripped)
    for data in objects:
        value, error = _validate(data, schema)
        if value is not None:
            return HealResult(value, how="embedded")
        mismatch = mismatch or error
    if mismatch is not None:
        return HealResult(None, "schema_mismatch", mismatch)
    return HealResult(None, "not_json", f"no JSON object found in: {_preview(stripped)}")


def _embedded_objects(text: str) -> list[Any]:
    """Every JSON object that starts at some `{` in `text`, the longest spans first."""
    found: list[tuple[int, Any]] = []
    start = text.find("{")
    while start != -1:
        try:
            data, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            pass
        else:
            if isinstance(data, dict):
                found.append((end - start, data))
        start = text.find("{", start + 1)
    found.sort(key=lambda item: item[0], reverse=True)
    return [data for _, data in found]


def _validate(data: Any, schema: type[ModelT]) -> tuple[ModelT | None, str | None]:
    try:
        return schema.model_validate(data), None
    except ValidationError as exc:
        return None, str(exc)


def _preview(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
