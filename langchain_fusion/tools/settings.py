"""The fusion parameters as keyword fields, shared by `FusionTool` and `ChatFusion`.

The fields feed the configuration chain: `fusion_parameters()` (the contract's parameters,
what users send), `fusion_limits()` (our reliability limits), then `fusion_setup()` (the
resolved models, graph/setup.py). Unknown keywords are refused with the closest valid name.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

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
from langchain_fusion.graph.setup import FusionSetup, build_setup
from langchain_fusion.limits import FusionLimits, limits_from

_LIMIT_FIELDS = ("min_successful", "straggler_grace", "deadline", "max_total_tokens", "max_cost")


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
    tools: list[ToolSpec] | None = None
    """What panelists and the judge may use (the contract's `tools`); `[]` turns tools off."""
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

    @model_validator(mode="before")
    @classmethod
    def _known_keywords(cls, data: Any) -> Any:
        if isinstance(data, dict):
            names = [
                alias
                for name, field in cls.model_fields.items()
                for alias in (name, field.alias)
                if alias
            ]
            unknown_keywords(cls.__name__, data, names)
        return data

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
        for name in (
            "preset",
            "max_tool_calls",
            "max_completion_tokens",
            "reasoning",
            "tools",
            "cache_control",
        ):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
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
            cascade=self.cascade,
        )
