"""The gateway's promises, measured (issue 18): for each overspend shape, 50 concurrent
requests on one key whose cap holds 3 worst cases, against `HostileOpenAIServer` (one
token per UTF-8 byte, `n` billed); what the upstream billed over the cap. Then the
leaks: how many of a set of scenarios carry the server's (not key-shaped) upstream key.

    python -m bench.promises        # a table; a ratio over 1.0 is an exceeded cap

Runs in-process (`FusionServer`, a thread), in seconds; nothing here is timed.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_server_caps import KEY, SHAPES, _race  # type: ignore[import-not-found]
from test_server_redaction import UPSTREAM, _scenarios  # type: ignore[import-not-found]
from test_server_support import PANEL, healthy, settings, start  # type: ignore[import-not-found]

from langchain_fusion.server import KeyRing, ServerKey, SpendLedger
from langchain_fusion.testing import HostileOpenAIServer, ModelScript

AUTH = {"authorization": f"Bearer {KEY}"}
ADMITTED = 3


def _cap(upstream: HostileOpenAIServer, folder: Path, body: dict[str, Any]) -> int | None:
    probe = ServerKey.model_validate({"name": "probe", "key": KEY, "max_tokens": 1})
    with start(upstream, keys=KeyRing([probe]), ledger=SpendLedger(folder / "p.db")) as server:
        refused = httpx.post(f"{server.base_url}/chat/completions", json=body, headers=AUTH)
    if refused.status_code != 402:
        return None
    worst: int = refused.json()["error"]["metadata"]["worst_case"]["tokens"]
    return ADMITTED * worst


def caps() -> list[tuple[str, int, int, float]]:
    rows = []
    for shape, body in SHAPES.items():
        with HostileOpenAIServer(default=healthy()) as upstream, tempfile.TemporaryDirectory() as d:
            cap = _cap(upstream, Path(d), body)
            if cap is None:
                continue
            key = ServerKey.model_validate({"name": "team", "key": KEY, "max_tokens": cap})
            with start(upstream, keys=KeyRing([key]), ledger=SpendLedger(Path(d) / "s.db")) as s:
                asyncio.run(_race(s.base_url, body))
            rows.append((shape, upstream.billed_tokens, cap, upstream.billed_tokens / cap))
    return rows


def leaks() -> tuple[int, int]:
    with HostileOpenAIServer(default=healthy()) as upstream:
        upstream.set_script(PANEL[0], ModelScript(status_code=500))
        upstream.set_script("vendor/denied", ModelScript(status_code=401))
        with start(upstream, model_settings=settings(upstream, api_key=UPSTREAM)) as server:
            answers = _scenarios(server.base_url, {})
    return sum(UPSTREAM in a.text for a in answers), len(answers)


def main() -> None:
    print(f"{'shape':<22}{'billed':>10}{'cap':>10}{'billed/cap':>12}")
    for shape, billed, cap, ratio in caps():
        print(f"{shape:<22}{billed:>10}{cap:>10}{ratio:>12.2f}")
    leaked, total = leaks()
    print(f"answers carrying the upstream key: {leaked} of {total}")


if __name__ == "__main__":
    main()
