"""`langchain-fusion serve` as processes: a spend cap shared by two servers through one
SQLite file and kept across a restart, and `--workers`.

Each server is the installed command in a subprocess, on a free port, against the
scripted backend in this process.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_server_support import CAPPED_REQUEST, PANEL, serve_command

from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer
from tests.test_cli import invoke

KEY = "sk-fusion-team-2222222222"
AUTH = {"authorization": f"Bearer {KEY}"}
REQUEST = CAPPED_REQUEST


@contextlib.contextmanager
def serving(upstream: ScriptedOpenAIServer, *args: str) -> Iterator[str]:
    """`langchain-fusion serve` on a free port; yields its base URL."""
    with serve_command(upstream, *args) as (url, _):
        yield url


def _keys_file(tmp_path: Path, max_tokens: int) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"name": "team", "key": KEY, "max_tokens": max_tokens}]}))
    return path


def _post(url: str) -> httpx.Response:
    return httpx.post(f"{url}/chat/completions", json=REQUEST, headers=AUTH, timeout=60)


def _usage(url: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{url}/key", headers=AUTH, timeout=10).json()["data"]
    return data


def test_a_spend_cap_holds_across_two_processes_and_a_restart(
    scripted_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    ledger = str(tmp_path / "spend.sqlite3")
    # The worst case of REQUEST, as the server estimates it: its 402 for a one-token cap.
    with serving(
        scripted_server, "--keys-file", str(_keys_file(tmp_path, 1)), "--ledger", ledger
    ) as url:
        probe = _post(url)
    assert probe.status_code == 402
    worst = probe.json()["error"]["metadata"]["worst_case"]["tokens"]
    assert scripted_server.requests == []

    keys = str(_keys_file(tmp_path, worst))  # room for exactly one worst case
    scripted_server.set_script(PANEL[0], ModelScript(time_to_first_token=0.5))
    with (
        serving(scripted_server, "--keys-file", keys, "--ledger", ledger) as first,
        serving(scripted_server, "--keys-file", keys, "--ledger", ledger) as second,
    ):
        results: list[httpx.Response] = []
        running = threading.Thread(target=lambda: results.append(_post(first)))
        running.start()
        while not scripted_server.requests_for(PANEL[0]):  # the first server's run is upstream
            threading.Event().wait(0.02)
        held = _post(second)  # the other process sees the reservation
        running.join()
        assert results[0].status_code == 200, results[0].text
        spent = results[0].json()["usage"]["total_tokens"]
        assert held.status_code == 402
        assert held.json()["error"]["metadata"]["reserved"]["tokens"] == worst
        assert _usage(second)["usage_tokens"] == spent  # settled, and seen by both
        after = _post(second)
        assert after.status_code == 402  # spent + another worst case is over the cap
    scripted_server.reset()
    with serving(scripted_server, "--keys-file", keys, "--ledger", ledger) as restarted:
        assert _usage(restarted)["usage_tokens"] == spent  # the spend survived the restart
        again = _post(restarted)
    assert again.status_code == 402
    assert again.json()["error"]["code"] == 402
    assert scripted_server.requests == []


def test_workers_share_the_port_and_answer(scripted_server: ScriptedOpenAIServer) -> None:
    with serving(scripted_server, "--workers", "2") as url:
        for _ in range(4):
            response = httpx.post(f"{url}/chat/completions", json=REQUEST, timeout=60)
            assert response.status_code == 200, response.text
            assert [r["model"] for r in response.json()["fusion"]["responses"]] == PANEL
    assert len(scripted_server.requests_for(PANEL[0])) == 4


def test_workers_refuse_the_embedded_model() -> None:
    # Refused before anything starts: checked in-process (no subprocess start-up).
    done = invoke("serve", "--local", "--workers", "2", "--port", "0")
    assert done.exit_code == 2
    assert "--workers" in done.stderr


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--max-request-cost", "1"], "needs a price"),
        (["--prices", "/nonexistent/prices.json"], "prices file"),
        (["--keys-file", "/nonexistent/keys.json"], "keys file"),
    ],
)
def test_serve_refuses_a_bad_configuration(
    scripted_server: ScriptedOpenAIServer, args: list[str], problem: str
) -> None:
    # Refused before the server starts: checked in-process.
    done = invoke("serve", "--port", "0", *args, server=scripted_server)
    assert done.exit_code == 2, done.stderr
    assert problem in " ".join(done.stderr.split())
    assert scripted_server.requests == []
