"""Named panels ("presets"): data a user can read, extend and switch between.

The hosted service documents `general-high` (its "Quality" preset); `general-budget` is the
panel of OpenRouter's published example of a custom panel, and `general-fast` is our choice
of fast, inexpensive models. Explicit `analysis_models` / `model` always win over a preset.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field


class Preset(BaseModel):
    """A named panel and judge."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    analysis_models: tuple[str, ...] = Field(min_length=1, max_length=8)
    """The panel: model slugs that answer the prompt in parallel."""
    model: str
    """The judge that compares the panel's answers."""
    description: str = ""


_PRESETS: dict[str, Preset] = {
    "general-high": Preset(
        analysis_models=(
            "~anthropic/claude-opus-latest",
            "~openai/gpt-latest",
            "~google/gemini-pro-latest",
        ),
        model="~anthropic/claude-opus-latest",
        description="Quality: the hosted service's default panel of frontier models.",
    ),
    "general-budget": Preset(
        analysis_models=(
            "~google/gemini-flash-latest",
            "deepseek/deepseek-v3.2",
            "~moonshotai/kimi-latest",
        ),
        model="~google/gemini-flash-latest",
        description="Budget: strong, inexpensive models from three labs.",
    ),
    "general-fast": Preset(
        analysis_models=(
            "~google/gemini-flash-latest",
            "~openai/gpt-mini-latest",
            "~anthropic/claude-haiku-latest",
        ),
        model="~google/gemini-flash-latest",
        description="Fast: low-latency models; what `openrouter/fusion-flash` selects.",
    ),
}

DEFAULT_PRESET = "general-high"

PRESETS: Mapping[str, Preset] = MappingProxyType(_PRESETS)
"""Every preset known to this process, by name (read-only view; see `register_preset`)."""


def register_preset(name: str, preset: Preset, *, replace: bool = False) -> None:
    """Add a named preset, so that `FusionParameters(preset=name)` can select it."""
    if not name or name != name.strip():
        raise ValueError(f"preset name must be a non-empty string without spaces, got {name!r}")
    if name in _PRESETS and not replace:
        raise ValueError(f"preset {name!r} already exists; pass replace=True to redefine it")
    _PRESETS[name] = preset


def get_preset(name: str) -> Preset:
    """Return the preset called `name`, or raise `KeyError` naming the known ones."""
    try:
        return _PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(_PRESETS))
        raise KeyError(f"unknown preset {name!r}; known presets: {known}") from None
