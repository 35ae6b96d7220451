"""`FusionParameters`: the hosted service's parameters, validated before any model is called.

The same JSON a user sends to OpenRouter loads here unchanged, either in the server-tool
form `{"type": "openrouter:fusion", "parameters": {...}}` or as a bare parameters object.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails

from langchain_fusion.contract.presets import DEFAULT_PRESET, PRESETS, get_preset

SERVER_TOOL_TYPE = "openrouter:fusion"

MIN_PANEL, MAX_PANEL = 1, 8
MIN_TOOL_CALLS, MAX_TOOL_CALLS = 1, 16
DEFAULT_MAX_TOOL_CALLS = 4
"""The hosted default since 2026-08-07 (the first published default was 8)."""
DEFAULT_MAX_COMPLETION_TOKENS = 16_000
"""The hosted default: output tokens per panel and judge call, reasoning included."""
MAX_TOOLS = 8

ModelSlug = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^\S+$")
]
ReasoningEffort = Literal["max", "xhigh", "high", "medium", "low", "minimal", "none"]

# What each field accepts, in words: the error message names the field and this range.
ALLOWED: dict[str, str] = {
    "analysis_models": f"a list of {MIN_PANEL} to {MAX_PANEL} model slugs (repeats allowed)",
    "model": "the judge's (analyst's) model slug, such as 'openai/gpt-4.1' (no spaces)",
    "preset": "one of the registered presets",
    "max_tool_calls": f"an integer from {MIN_TOOL_CALLS} to {MAX_TOOL_CALLS}",
    "max_completion_tokens": "a positive integer",
    "reasoning": "an object with optional 'effort' and 'max_tokens'",
    "reasoning.effort": "one of max, xhigh, high, medium, low, minimal, none",
    "reasoning.max_tokens": "a positive integer",
    "temperature": "a number from 0 to 2",
    "tools": f"a list of at most {MAX_TOOLS} objects {{type, parameters?}}; [] turns tools off",
    "cache_control": 'an object {"type": "ephemeral", "ttl"?: "5m" or "1h"}',
    "cache_control.type": '"ephemeral"',
    "cache_control.ttl": '"5m" or "1h"',
}


class FusionParameterError(ValueError):
    """Invalid fusion parameters. Raised before any model is called."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid fusion parameters:\n" + "\n".join(f"- {p}" for p in problems))


class ReasoningConfig(BaseModel):
    """Reasoning settings forwarded to panel and judge calls."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    effort: ReasoningEffort | None = None
    max_tokens: int | None = Field(default=None, gt=0, strict=True)


class CacheControl(BaseModel):
    """Anthropic's prompt-caching directive, forwarded to panel and judge calls."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class ToolSpec(BaseModel):
    """A tool panelists and the judge may use, as the hosted API spells it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    """For example `openrouter:web_search` or `openrouter:web_fetch`."""
    parameters: dict[str, Any] | None = None


DEFAULT_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(type="openrouter:web_search"),
    ToolSpec(type="openrouter:web_fetch"),
)


class FusionParameters(BaseModel):
    """The fusion parameters of the hosted service, with its ranges and defaults.

    Every field is optional; unknown fields and out-of-range values raise
    `FusionParameterError`, whose message names the field and the allowed range.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    analysis_models: list[ModelSlug] | None = Field(
        default=None, min_length=MIN_PANEL, max_length=MAX_PANEL
    )
    """The panel. Default: the preset's panel."""
    model: ModelSlug | None = None
    """The judge. Default: the outer model where there is one, else the preset's judge."""
    preset: str = DEFAULT_PRESET
    """`general-high`, `general-budget`, `general-fast`, or one added with `register_preset`."""
    max_tool_calls: int = Field(
        default=DEFAULT_MAX_TOOL_CALLS, ge=MIN_TOOL_CALLS, le=MAX_TOOL_CALLS, strict=True
    )
    """Tool-calling steps each panelist and the judge may take before answering in text."""
    max_completion_tokens: int = Field(default=DEFAULT_MAX_COMPLETION_TOKENS, gt=0, strict=True)
    """Output-token limit (reasoning included) per panel and judge call. Chat model
    instances you pass keep their own limit unless you set this explicitly."""
    reasoning: ReasoningConfig | None = None
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    """Forwarded to panel calls; the judge always runs at 0."""
    tools: list[ToolSpec] | None = Field(default=None, max_length=MAX_TOOLS)
    """What panelists and the judge may use. None: web search and fetch; []: no tools."""
    cache_control: CacheControl | None = None
    """Prompt caching for panel and judge calls (sent where the endpoint is OpenRouter)."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise FusionParameterError(_describe(exc)) from None

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> FusionParameters:
        """Validate `obj`, raising `FusionParameterError` with readable messages."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise FusionParameterError(_describe(exc)) from None

    @classmethod
    def model_validate_json(
        cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any
    ) -> FusionParameters:
        """Validate JSON text, raising `FusionParameterError` with readable messages."""
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as exc:
            raise FusionParameterError(_describe(exc)) from None

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown preset {value!r}")
        return value

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any]) -> FusionParameters:
        """Load the JSON a user would send to the hosted service.

        Accepts the server-tool form `{"type": "openrouter:fusion", "parameters": {...}}`
        (parameters optional) and a bare parameters object.
        """
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
                raise FusionParameterError([f"not valid JSON: {exc}"]) from None
        if not isinstance(data, Mapping):
            raise FusionParameterError([f"expected a JSON object, got {type(data).__name__}"])
        if "type" in data:
            if data["type"] != SERVER_TOOL_TYPE:
                raise FusionParameterError(
                    [f"type: expected {SERVER_TOOL_TYPE!r}, got {data['type']!r}"]
                )
            extra = sorted(set(data) - {"type", "parameters"})
            if extra:
                raise FusionParameterError(
                    [
                        f"{key}: unknown field of the server tool; allowed: type, parameters"
                        for key in extra
                    ]
                )
            inner: Any = data.get("parameters")
            if inner is None:  # the hosted service treats parameters as optional
                inner = {}
            if not isinstance(inner, Mapping):
                raise FusionParameterError(["parameters: expected a JSON object"])
            data = inner
        return cls.model_validate(dict(data))

    @property
    def panel(self) -> list[str]:
        """The panel's model slugs: `analysis_models`, else the preset's panel."""
        if self.analysis_models is not None:
            return list(self.analysis_models)
        return list(get_preset(self.preset).analysis_models)

    @property
    def judge(self) -> str:
        """The judge's slug: `model`, else the preset's judge."""
        return self.model or get_preset(self.preset).model

    @property
    def effective_tools(self) -> tuple[ToolSpec, ...]:
        """The tools panelists may use: `tools`, else web search and web fetch."""
        return DEFAULT_TOOLS if self.tools is None else tuple(self.tools)


def _describe(exc: ValidationError) -> list[str]:
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        # `model_validate` runs our `__init__`, whose error pydantic wraps once more.
        inner = error.get("ctx", {}).get("error")
        if isinstance(inner, FusionParameterError):
            problems.extend(inner.problems)
        else:
            problems.append(_describe_one(error))
    return problems


def _describe_one(error: ErrorDetails) -> str:
    loc = [str(part) for part in error["loc"]]
    top = loc[0] if loc else ""
    path = ".".join(loc) if loc else "(parameters)"
    if error["type"] == "extra_forbidden":
        parent = ".".join(loc[:-1])
        if parent.startswith("reasoning"):
            allowed = "effort, max_tokens"
        elif parent.startswith("cache_control"):
            allowed = "type, ttl"
        elif parent.startswith("tools"):
            allowed = "type, parameters"
        else:
            allowed = ", ".join(FusionParameters.model_fields)
        close = difflib.get_close_matches(loc[-1], allowed.split(", "), n=1, cutoff=0.6)
        hint = f" (did you mean `{close[0]}`?)" if close else ""
        return f"{path}: unknown field{hint}; allowed fields: {allowed}"
    given = error.get("input")
    shown = json.dumps(given, default=str) if not isinstance(given, dict) else "{...}"
    if len(shown) > 80:
        shown = shown[:77] + "..."
    key = ".".join(part for part in loc if not part.isdigit())
    allowed = ALLOWED.get(key) or ALLOWED.get(top, "")
    if top == "preset":
        allowed = "one of " + ", ".join(sorted(PRESETS))
    if top == "analysis_models" and isinstance(given, list):
        shown = f"{len(given)} models"
    reason = error["msg"]
    if reason.startswith("Value error, "):
        reason = reason.removeprefix("Value error, ")
    return f"{path} = {shown}: {reason}; allowed: {allowed}"
