"""The resolved set-up of a deliberation: parameters plus the concrete models for each seat."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_openai.chat_models.base import BaseChatOpenAI

from langchain_fusion.backends import (
    ModelLike,
    OpenAICompatibleBackend,
    configure_inner_call,
    model_label,
    resolve_model,
)
from langchain_fusion.parameters import MAX_PANEL, MIN_PANEL, FusionParameterError, FusionParameters
from langchain_fusion.result import AnalysisLimits


@dataclass(frozen=True)
class PanelSeat:
    """One seat of the panel: the model that answers there, set up for a panel call."""

    index: int
    label: str
    model: Runnable[LanguageModelInput, BaseMessage]


@dataclass(frozen=True)
class FusionConfiguration:
    """Parameters and models, resolved once when the graph is built, never per call."""

    parameters: FusionParameters
    panel: tuple[PanelSeat, ...]
    judge_label: str
    judge: Runnable[LanguageModelInput, Any]
    """The judge bound to the analysis schema; returns `{"raw", "parsed", "parsing_error"}`."""
    synthesizer_label: str | None
    synthesizer: Runnable[LanguageModelInput, BaseMessage] | None
    """The outer model writing the final answer; None when the caller writes it (tool form)."""

    @classmethod
    def build(
        cls,
        parameters: FusionParameters | Mapping[str, Any] | None = None,
        *,
        panel: Sequence[ModelLike] | None = None,
        judge: ModelLike | None = None,
        outer_model: ModelLike | None = None,
        synthesize: bool = True,
        backend: OpenAICompatibleBackend | None = None,
        analysis_limits: AnalysisLimits | None = None,
    ) -> FusionConfiguration:
        """Resolve slugs and instances into configured models.

        The judge is `judge`, else `parameters.model`, else the outer model, else the
        preset's judge. The synthesis is written by `outer_model`, else the judge.
        """
        params = _parameters(parameters)
        backend = backend or OpenAICompatibleBackend()
        entries: Sequence[ModelLike] = panel if panel is not None else params.panel
        if not MIN_PANEL <= len(entries) <= MAX_PANEL:
            raise FusionParameterError(
                [f"panel = {len(entries)} models; allowed: {MIN_PANEL} to {MAX_PANEL} models"]
            )
        seats = []
        for index, entry in enumerate(entries):
            model = resolve_model(entry, backend, panel_index=index)
            label = model_label(model)
            configured = configure_inner_call(
                model,
                temperature=params.temperature,
                max_tokens=params.max_completion_tokens,
                reasoning=params.reasoning,
            )
            seats.append(PanelSeat(index, label, configured.with_config(run_name=f"panel:{label}")))

        judge_like = judge or params.model or outer_model or params.judge
        judge_model = resolve_model(judge_like, backend)
        configured_judge = configure_inner_call(
            judge_model,
            temperature=0.0,  # a repeatable analysis
            max_tokens=params.max_completion_tokens,
            reasoning=params.reasoning,
        )

        synthesizer_label = synthesizer = None
        if synthesize:
            outer = resolve_model(outer_model, backend) if outer_model else judge_model
            synthesizer_label = model_label(outer)
            synthesizer = configure_inner_call(
                outer, max_tokens=params.max_completion_tokens, depth=None
            ).with_config(run_name="synthesis")

        return cls(
            parameters=params,
            panel=tuple(seats),
            judge_label=model_label(judge_model),
            judge=_structured_judge(
                configured_judge, (analysis_limits or AnalysisLimits()).json_schema()
            ).with_config(run_name="judge"),
            synthesizer_label=synthesizer_label,
            synthesizer=synthesizer,
        )


def _parameters(parameters: FusionParameters | Mapping[str, Any] | None) -> FusionParameters:
    if parameters is None:
        return FusionParameters()
    if isinstance(parameters, FusionParameters):
        return parameters
    return FusionParameters.from_json(parameters)


def _structured_judge(
    model: BaseChatModel, schema: dict[str, Any]
) -> Runnable[LanguageModelInput, Any]:
    # OpenAI-compatible servers get `response_format: json_schema`, which constrained
    # decoders (llama.cpp) enforce; other providers use their own structured-output method.
    if isinstance(model, BaseChatOpenAI):
        return model.with_structured_output(schema, method="json_schema", include_raw=True)
    try:
        return model.with_structured_output(schema, include_raw=True)
    except NotImplementedError:
        # A text-only model: the prompt asks for the JSON and the healing parser reads it.
        return model | RunnableLambda(_as_raw_output, name="raw_output")


def _as_raw_output(message: BaseMessage) -> dict[str, Any]:
    return {"raw": message, "parsed": None, "parsing_error": None}
