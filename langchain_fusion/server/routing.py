"""What a request asks of fusion, and the deliberation it resolves to.

Fusion is asked for in three ways, as on the hosted service: a model alias
(`openrouter/fusion`, `openrouter/fusion-flash`), the `openrouter:fusion` server tool with
any outer model, or the `fusion` plugin (sugar for the tool; `enabled: false` turns it
off). Each may carry the contract's parameters. A request with none of them is a plain
completion. The server's own configuration (`--models`, `--judge`, ...) fills whatever a
request leaves unset; where the server sets nothing, the hosted defaults apply (the
`general-high` panel; the judge is the outer model, or the preset's for an alias).

Everything here is validated before any model is called.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel

from langchain_fusion.backends import ModelLike, model_label
from langchain_fusion.chat_models import FUSION_ALIASES, ChatFusion
from langchain_fusion.contract.cascade import Cascade, cascade_from
from langchain_fusion.contract.parameters import (
    SERVER_TOOL_TYPE,
    FusionParameterError,
    FusionParameters,
)
from langchain_fusion.server.errors import invalid

PLUGIN_ID = "fusion"
DEFAULT_ROUTER = "openrouter/fusion"
# ChatFusion fields that the resolution below decides; every other field the server was
# configured with (limits, timeouts, research tools, ...) is passed on unchanged.
_DECIDED = frozenset(
    {
        "parameters",
        "analysis_models",
        "judge_model",
        "preset",
        "max_tool_calls",
        "max_completion_tokens",
        "reasoning",
        "tools",
        "panel_temperature",
        "outer_model",
        "model_name",
        "backend",
        "base_url",
        "api_key",
        "timeout",
        "max_retries",
    }
)


@dataclass(frozen=True)
class FusionAsk:
    """Fusion as one request asks for it, before the server's defaults."""

    model: str
    """The request's `model`."""
    alias: str | None
    """The alias named, if `model` is one."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """The contract's parameters the request sets (validated)."""
    enabled: bool = True
    """False: the plugin's `enabled: false`; the outer model answers without fusion."""
    cache_control: Mapping[str, Any] | None = None
    cascade: Cascade | None = None
    """Our extension `parameters.cascade` (not the hosted contract's), validated."""


def find_fusion(
    model: str, tools: Any, plugins: Any, *, tools_field: str = "tools"
) -> FusionAsk | None:
    """The fusion a request asks for, or None for a plain completion (400 on bad input)."""
    fusion_tools = [
        (index, tool)
        for index, tool in enumerate(_objects(tools, tools_field))
        if tool.get("type") == SERVER_TOOL_TYPE
    ]
    fusion_plugins = [
        (index, plugin)
        for index, plugin in enumerate(_objects(plugins, "plugins"))
        if plugin.get("id") == PLUGIN_ID
    ]
    if len(fusion_tools) > 1:
        raise invalid(f"'{tools_field}' lists {SERVER_TOOL_TYPE} more than once", tools_field)
    if len(fusion_plugins) > 1:
        raise invalid("'plugins' lists the fusion plugin more than once", "plugins")
    if fusion_tools and fusion_plugins:
        raise invalid(
            f"fusion is configured twice: give either the {SERVER_TOOL_TYPE} tool or the "
            "fusion plugin, not both",
            "plugins",
        )
    alias = model if model in FUSION_ALIASES else None
    enabled = True
    overrides: dict[str, Any] = {}
    cache_control = None
    cascade = None
    if fusion_tools:
        index, tool = fusion_tools[0]
        where = f"{tools_field}[{index}]"
        extra = sorted(set(tool) - {"type", "parameters"})
        if extra:
            raise invalid(
                f"{where}: unknown field(s) {', '.join(extra)}; allowed: type, parameters"
            )
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise invalid(f"{where}.parameters: expected an object", f"{where}.parameters")
        data = dict(parameters or {})
        cascade = _cascade(data.pop("cascade", None), f"{where}.parameters")
        overrides, cache_control = _parameters(data, f"{where}.parameters")
    elif fusion_plugins:
        index, plugin = fusion_plugins[0]
        where = f"plugins[{index}]"
        flag = plugin.get("enabled", True)
        if not isinstance(flag, bool):
            raise invalid(f"{where}.enabled: expected true or false", f"{where}.enabled")
        enabled = flag
        rest = {k: v for k, v in plugin.items() if k not in ("id", "enabled")}
        cascade = _cascade(rest.pop("cascade", None), where)
        overrides, cache_control = _parameters(rest, where)
        if not enabled and alias is None:
            return None  # the plugin turned off on a plain model: a plain completion
    elif alias is None:
        return None
    others = [p.get("id") for p in _objects(plugins, "plugins") if p.get("id") != PLUGIN_ID]
    if others:
        # Each would change the answer; ignoring one silently would be worse than saying so.
        raise invalid(
            f"plugin(s) {', '.join(map(repr, others))} cannot be combined with fusion here "
            "(only the fusion plugin is)",
            "plugins",
        )
    return FusionAsk(
        model=model,
        alias=alias,
        overrides=overrides,
        enabled=enabled,
        cache_control=cache_control,
        cascade=cascade,
    )


def _cascade(value: Any, where: str) -> Cascade | None:
    """`cascade` of the fusion tool's parameters (or the plugin), validated: JSON, so its
    rule is one of the named ones."""
    if value is None:
        return None
    try:
        return cascade_from(value)
    except FusionParameterError as error:
        raise invalid(f"{where}." + "; ".join(error.problems), f"{where}.cascade") from None


def _objects(value: Any, name: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise invalid(f"'{name}' must be a list of objects", name)
    return value


def _parameters(data: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The contract's parameters (validated, only those set) and `cache_control`."""
    try:
        parameters = FusionParameters.from_json(data)
    except FusionParameterError as error:
        raise invalid(
            f"{where}: invalid fusion parameters: " + "; ".join(error.problems), where
        ) from None
    cache_control = parameters.cache_control
    return (
        parameters.model_dump(exclude_unset=True),
        cache_control.model_dump(exclude_none=True) if cache_control else None,
    )


# --- the server's defaults, per alias ----------------------------------------------------


@dataclass(frozen=True)
class AliasDefaults:
    """What the server was configured with for one alias, taken from its `ChatFusion`."""

    alias: str
    cls: type[ChatFusion]
    parameters: Mapping[str, Any]
    """The contract's parameters the configuration sets (the alias's preset included)."""
    panel: tuple[ModelLike, ...] | None
    """A panel of chat model instances (the embedded model's seats), if configured so."""
    judge: BaseChatModel | None
    outer: ModelLike | None
    settings: Mapping[str, Any]
    """Every other field, passed on to each `ChatFusion` built for this alias."""
    max_tokens: int | None
    """The outer model's configured output limit."""

    @classmethod
    def of(cls, alias: str, chat: ChatFusion) -> AliasDefaults:
        given = {name: getattr(chat, name) for name in chat.model_fields_set}
        params = given.get("parameters")
        data: dict[str, Any] = params.model_dump(exclude_unset=True) if params else {}
        panel = given.get("analysis_models")
        instances: tuple[ModelLike, ...] | None = None
        if panel is not None and all(isinstance(model, str) for model in panel):
            data["analysis_models"] = list(panel)
        elif panel is not None:
            instances = tuple(panel)
        judge = given.get("judge_model")
        if isinstance(judge, str):
            data["model"] = judge
        for name in ("max_tool_calls", "max_completion_tokens", "reasoning", "tools"):
            if given.get(name) is not None:
                data[name] = given[name]
        if given.get("panel_temperature") is not None:
            data["temperature"] = given["panel_temperature"]
        # As ChatFusion does: the field, else the alias's own preset, wins over `parameters`.
        preset = given.get("preset") or FUSION_ALIASES.get(alias)
        if preset:
            data["preset"] = preset
        FusionParameters.model_validate(data)  # a bad configuration fails at start-up
        return cls(
            alias=alias,
            cls=type(chat),
            parameters=data,
            panel=instances,
            judge=judge if isinstance(judge, BaseChatModel) else None,
            outer=given.get("outer_model"),
            settings={k: v for k, v in given.items() if k not in _DECIDED},
            max_tokens=chat.max_tokens,
        )


@dataclass(frozen=True)
class Deliberation:
    """The models and parameters one request deliberates with: what the policy checks and
    what the `ChatFusion` is built from (so the two cannot differ)."""

    defaults: AliasDefaults
    router: str
    parameters: FusionParameters
    outer: ModelLike
    panel: tuple[ModelLike, ...]
    judge: ModelLike
    cache_control: Mapping[str, Any] | None = None
    cascade: Cascade | None = None

    @property
    def fallback_judge(self) -> ModelLike | None:
        fallback = self.defaults.settings.get("fallback_judge_model")
        return fallback if isinstance(fallback, str | BaseChatModel) else None

    def models(self) -> list[str]:
        """Every model this deliberation may call: outer, panel, judge, fallback judge."""
        entries: list[ModelLike] = [self.outer, *self.panel, self.judge]
        if self.fallback_judge is not None:
            entries.append(self.fallback_judge)
        return [label(entry) for entry in entries]

    def cache_key(self) -> tuple[Any, ...]:
        """Equal for requests that can share one `ChatFusion`."""
        return (
            self.defaults.alias,
            self.router,
            _identity(self.outer),
            tuple(_identity(model) for model in self.panel),
            _identity(self.judge),
            json.dumps(self.parameters.model_dump(mode="json", exclude_unset=True), sort_keys=True),
            json.dumps(self.cache_control, sort_keys=True),
            self.cascade.model_dump_json() if self.cascade else None,
        )


def resolve(ask: FusionAsk, defaults: AliasDefaults) -> Deliberation:
    """Apply the server's defaults to what the request asks (400 on invalid parameters)."""
    data = dict(defaults.parameters)
    panel: tuple[ModelLike, ...] | None = defaults.panel
    judge_instance: BaseChatModel | None = defaults.judge
    asked = dict(ask.overrides)
    if "preset" in asked:  # a preset in the request replaces the configured panel and judge
        if "analysis_models" not in asked:
            data.pop("analysis_models", None)
            panel = None
        if "model" not in asked:
            data.pop("model", None)
            judge_instance = None
    if "analysis_models" in asked:
        panel = None
    if "model" in asked:
        judge_instance = None
    data.update(asked)
    try:
        parameters = FusionParameters.model_validate(data)
    except FusionParameterError as error:
        raise invalid("invalid fusion parameters: " + "; ".join(error.problems)) from None

    outer: ModelLike
    if ask.alias is not None:
        # The alias resolves to the judge named in the request, as the hosted plugin swaps
        # it; else to the configured outer model, judge, or preset's judge (ChatFusion's rule).
        outer = asked.get("model") or defaults.outer or judge_instance or parameters.judge
    else:
        outer = ask.model
    judge: ModelLike
    if parameters.model is not None:
        judge = parameters.model
    elif judge_instance is not None:
        judge = judge_instance
    elif ask.alias is None:
        judge = outer  # the hosted default: the model of the request
    else:
        judge = defaults.outer or parameters.judge
    seats = panel if panel is not None else tuple(parameters.panel)
    return Deliberation(
        defaults=defaults,
        router=ask.alias or DEFAULT_ROUTER,
        parameters=parameters,
        outer=outer,
        panel=seats,
        judge=judge,
        cache_control=ask.cache_control,
        cascade=ask.cascade,
    )


def label(model: ModelLike) -> str:
    return model if isinstance(model, str) else model_label(model)


def _identity(model: ModelLike) -> Any:
    return model if isinstance(model, str) else ("instance", id(model))
