"""`X-OpenRouter-Metadata: enabled`: the routing metadata a client opted in to.

The hosted schema's `OpenRouterMetadata` names the routing strategy in `strategy`
(`fusion` for a deliberation); the hosted reference also reads it as
`routing.strategy`, so both carry it. Without the header (or with `disabled`) nothing is
added, as hosted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

HEADER = "x-openrouter-metadata"
LEGACY_HEADER = "x-openrouter-experimental-metadata"


def wants_metadata(headers: Mapping[str, str]) -> bool:
    value = headers.get(HEADER) or headers.get(LEGACY_HEADER) or ""
    return value.strip().lower() == "enabled"


def routing_metadata(
    requested: str, models: Iterable[str], *, fusion: bool, byok: bool
) -> dict[str, Any]:
    """The `openrouter_metadata` of one request: what was asked for, how it was routed."""
    strategy = "fusion" if fusion else "direct"
    available = [
        {"model": model, "provider": "langchain-fusion", "selected": True}
        for model in dict.fromkeys(models)
    ]
    return {
        "requested": requested,
        "strategy": strategy,
        "routing": {"strategy": strategy},
        "region": None,
        "summary": f"strategy={strategy}, models={len(available)}",
        "attempt": 1,
        "is_byok": byok,
        "endpoints": {"total": len(available), "available": available},
    }


def with_metadata(
    body: dict[str, Any],
    headers: Mapping[str, str],
    requested: str,
    models: Iterable[str],
    *,
    fusion: bool,
    byok: bool,
) -> dict[str, Any]:
    """`body` with `openrouter_metadata` when the request opted in."""
    if wants_metadata(headers):
        body["openrouter_metadata"] = routing_metadata(requested, models, fusion=fusion, byok=byok)
    return body
