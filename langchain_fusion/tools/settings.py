"""The fusion parameters as keyword fields, shared by `FusionTool` and `ChatFusion`.

The fields feed the configuration chain: `fusion_parameters()` (the contract's parameters,
what users send), `fusion_limits()` (our reliability limits), then `fusion_setup()` (the
resolved models, graph/setup.py). Unknown keywords are refused with the closest valid name.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator, model_validator

from langchain_fusion.backends import ModelLike, OpenAICompatibleBackend
from langchain_fusion.contract.cascade import Cascade, cascade_from
from langchain_fusion.contract.errors import unknown_keywords
from langchain_fusion.contract.parameters import (
    CacheControl,
    FusionParameters,
    ReasoningConfig,
    ToolSpec,
)
from langchain_fusion.contract.result import AnalysisLimits
from langchain_fusion.graph.setup import FusionSetup, build_setup, check_panel
from langchain_fusion.limits import FusionLimits, limits_from

_LIMIT_FIELDS = ("min_successful", "straggler_grace", "deadline", "max_total_tokens", "max_cost")
DEPRECATED_NAMES = {"tools": "server_tools", "temperature": "panel_temperature"}
"""Old keyword -> new field. `FusionTool(temperature=...)` was the panel's temperature
(next to `ChatFusion.temperature`, the outer model's); `tools` the hosted tool specs (next
to `bind_tools` and `research_tools`)."""

Built = TypeVar("Built")


class FusionSettings(BaseModel):
    """Fusion parameters as fields; explicit fields win over `parameters`.

    `analysis_models` and `judge_model` take slugs or ready chat model instances.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    parameters: FusionParameters | None = None
    """A whole parameter set (for example `FusionParameters.from_json(...)`)."""
    analysis_models: list[ModelLike] | None = None
    judge_model: ModelLike | None = None
    preset: str | None = None
    max_tool_calls: int | None = None
    max_completion_tokens: int | None = None
    reasoning: ReasoningConfig | None = None
    server_tools: list[ToolSpec] | None = None
    """The hosted tool specs panelists and the judge may use (the contract's `tools`, e.g.
    `{"type": "openrouter:web_search"}`); `[]` turns tools off. Formerly `tools`."""
    panel_temperature: float | None = None
    """The panel's temperature (0 to 2, the contract's `temperature`); the judge runs at 0."""
    stream_panel_tokens: bool | None = None
    """Panelists stream their tokens as `panel.delta` events: True always, False never,
    None when the caller streams (a streamed `ChatFusion`; a graph run asked for
    `stream_mode="custom"`). A `FusionTool` inside someone else's graph cannot tell
    whether that graph's caller listens, so there it streams them only when True. Every
    other progress event is always emitted."""
    cache_control: CacheControl | None = None
    """Prompt caching for panel and judge calls (on OpenRouter)."""
    backend: OpenAICompatibleBackend | None = None
    """Where slugs run; default OpenRouter from the environment."""
    analysis_limits: AnalysisLimits | None = None
    research_tools: list[BaseTool] | None = None
    """Your own tools for panelists and the judge, in place of the web tools."""
    limits: FusionLimits | None = None
    """Deadline, straggler policy, quorum and budget; the fields below override it."""
    min_successful: int | None = None
    straggler_grace: float | None = None
    deadline: float | None = None
    max_total_tokens: int | None = None
    max_cost: float | None = None
    fallback_judge_model: ModelLike | None = None
    """Asked when the judge fails, after the judge's own retry."""
    anonymize_judge: bool = False
    """The judge reads `Response A`, `Response B`, ... in a shuffled order, not model names."""
    cascade: Cascade | None = None
    """`{"first": k}` or a `Cascade`: the first k seats answer, the rest only when those
    disagree (see `langchain_fusion.Cascade`)."""

    _built: tuple[dict[str, Any], Any] | None = PrivateAttr(default=None)
    _build_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="before")
    @classmethod
    def _known_keywords(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = _renamed(cls, data)
            names = [
                alias
                for name, field in cls.model_fields.items()
                for alias in (name, field.alias)
                if alias
            ]
            unknown_keywords(cls.__name__, data, names)
        return data

    @model_validator(mode="after")
    def _valid_parameters(self) -> Any:
        # Bad parameters fail at construction; the models are resolved on first use.
        parameters = self.fusion_parameters()
        panel = self.analysis_models
        check_panel(
            len(panel) if panel is not None else len(parameters.panel),
            self.fusion_limits(),
            self.cascade,
        )
        return self

    def built(self, build: Callable[[], Built]) -> Built:
        """What `build` makes from the current fields, made on first use and again
        whenever a field holds another object (a `model_copy(update=...)`, an assignment):
        a copy behaves as its fields say."""
        fields = dict(self.__dict__)
        with self._build_lock:
            cached = self._built
            if cached is None or not _same(cached[0], fields):
                cached = (fields, build())
                self._built = cached
            result: Built = cached[1]
            return result

    @field_validator("cascade", mode="before")
    @classmethod
    def _cascade(cls, value: Any) -> Cascade | None:
        return cascade_from(value)  # our messages (allowed fields, rules), not pydantic's

    def fusion_limits(self) -> FusionLimits:
        """The effective `FusionLimits` (raises `FusionParameterError` on bad values)."""
        data = self.limits.model_dump(exclude_unset=True) if self.limits else {}
        for name in _LIMIT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return limits_from(data)

    def fusion_parameters(self, **overrides: Any) -> FusionParameters:
        """The effective `FusionParameters`, validated (raises `FusionParameterError`)."""
        data = self.parameters.model_dump(exclude_unset=True) if self.parameters else {}
        slugs = self.analysis_models
        if slugs is not None and all(isinstance(m, str) for m in slugs):
            data["analysis_models"] = slugs
        if isinstance(self.judge_model, str):
            data["model"] = self.judge_model
        for name, contract_name in (
            ("preset", "preset"),
            ("max_tool_calls", "max_tool_calls"),
            ("max_completion_tokens", "max_completion_tokens"),
            ("reasoning", "reasoning"),
            ("server_tools", "tools"),
            ("cache_control", "cache_control"),
            ("panel_temperature", "temperature"),
        ):
            value = getattr(self, name)
            if value is not None:
                data[contract_name] = value
        data.update({k: v for k, v in overrides.items() if v is not None})
        return FusionParameters.model_validate(data)

    def fusion_setup(
        self,
        *,
        backend: OpenAICompatibleBackend,
        outer_model: ModelLike | None = None,
        synthesize: bool = False,
        **overrides: Any,
    ) -> FusionSetup:
        """Resolve the panel and judge once (validated before any model is called)."""
        panel = self.analysis_models
        has_instances = panel is not None and any(isinstance(m, BaseChatModel) for m in panel)
        return build_setup(
            self.fusion_parameters(**overrides),
            panel=panel if has_instances else None,
            judge=self.judge_model if isinstance(self.judge_model, BaseChatModel) else None,
            outer_model=outer_model,
            synthesize=synthesize,
            backend=backend,
            analysis_limits=self.analysis_limits,
            research_tools=self.research_tools,
            limits=self.fusion_limits(),
            fallback_judge=self.fallback_judge_model,
            anonymize_judge=self.anonymize_judge,
            stream_panel_tokens=self.stream_panel_tokens,
            cascade=self.cascade,
        )


def _same(before: dict[str, Any], now: dict[str, Any]) -> bool:
    """The same objects in every field (identity: cheap, and any replacement counts)."""
    return before.keys() == now.keys() and all(before[k] is now[k] for k in now)


def _renamed(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The deprecated names as their new fields, with a `DeprecationWarning`."""
    fields = getattr(cls, "model_fields", {})
    old = [name for name in DEPRECATED_NAMES if name in data and name not in fields]
    if not old:
        return data
    data = dict(data)
    for name in old:
        new = DEPRECATED_NAMES[name]
        warnings.warn(
            f"{cls.__name__}({name}=...) is deprecated: use {new}=... (same meaning)",
            DeprecationWarning,
            stacklevel=4,
        )
        value = data.pop(name)
        data.setdefault(new, value)
    return data
