"""Server keys, spend caps in the SQLite ledger, and bring-your-own-key, in one process.

(Across processes and restarts: `test_server_processes.py`.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from test_server_support import PANEL, QUESTION, UPSTREAM_KEY, error_of, start

from langchain_fusion.server import KeyRing, ServerKey, Spend, SpendLedger
from langchain_fusion.server import keys as server_keys
from langchain_fusion.server.errors import GatewayError, redact
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

FAKE_KEY = "sk-or-v1-FAKEKEYdonotlog0123456789abcdef0123456789abcdef"
"""A caller's upstream key: recognisable, so that any leak is found."""
ALICE, BOB = "sk-fusion-alice-0000000000", "sk-fusion-bob-1111111111"
FORCED = {
    "model": "openrouter/fusion",
    "messages": [{"role": "user", "content": QUESTION}],
    "tool_choice": "required",
    "max_tokens": 50,
    "tools": [{"type": "openrouter:fusion", "parameters": {"max_completion_tokens": 50}}],
}


def _post(url: str, body: Any, key: str | None = None, **headers: str) -> httpx.Response:
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return httpx.post(f"{url}/chat/completions", json=body, headers=headers, timeout=30)


# --- keys ------------------------------------------------------------------------------------


def test_several_keys_each_work_and_others_get_a_401(
    scripted_server: ScriptedOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ring = KeyRing(
        [server_keys.key_from_secret("alice", ALICE), server_keys.key_from_secret("bob", BOB)]
    )
    with start(scripted_server, keys=ring) as server:
        for key in (ALICE, BOB):
            client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
            assert [m.id for m in client.models.list()] == [
                "openrouter/fusion",
                "openrouter/fusion-flash",
            ]
        for key in ("sk-wrong-key-000000", None):
            response = _post(server.base_url, FORCED, key)
            assert response.status_code == 401
            assert ALICE not in response.text
            assert BOB not in response.text
            assert "Missing or invalid API key" in error_of(response)["message"]
        health = httpx.get(server.url("/healthz"))
        assert health.json() == {"status": "ok"}  # a load balancer needs no key
    assert scripted_server.requests == []
    assert "sk-wrong-key" not in caplog.text
    assert ALICE not in caplog.text
    assert BOB not in caplog.text


def test_keys_are_compared_in_constant_time_with_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = server_keys.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(server_keys.hmac, "compare_digest", spy)
    ring = KeyRing([server_keys.key_from_secret(n, k) for n, k in (("alice", ALICE), ("bob", BOB))])
    principal = ring.authenticate({"authorization": f"Bearer {ALICE}"})
    assert principal.name == "alice"
    # Every key was compared (no early exit on the first match), digest against digest.
    assert len(compared) == 2
    assert all(a == hashlib.sha256(ALICE.encode()).hexdigest().encode() for a, _ in compared)
    compared.clear()
    with pytest.raises(GatewayError):
        ring.authenticate({"authorization": "Bearer sk-nobody-00000000"})
    assert len(compared) == 2


def test_keys_load_from_a_file_of_digests_and_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    digest = hashlib.sha256(ALICE.encode()).hexdigest()
    path.write_text(json.dumps({"keys": [{"name": "alice", "sha256": digest, "max_usd": 2.5}]}))
    (alice,) = server_keys.load_keys_file(path)
    assert (alice.name, alice.max_usd, alice.sha256) == ("alice", 2.5, digest)
    assert ALICE not in repr(alice)
    (bob, other) = server_keys.keys_from_environment(
        {"FUSION_SERVER_API_KEYS": f"bob:{BOB}, {ALICE}"}
    )
    assert bob.name == "bob"
    assert other.sha256 == digest
    path.write_text(json.dumps([{"name": "x", "key": "short"}]))
    with pytest.raises(ValueError, match=r"keys\[0\]"):
        server_keys.load_keys_file(path)


# --- bring your own key ----------------------------------------------------------------------


def test_byok_pays_with_the_callers_key_and_never_shows_it(
    scripted_server: ScriptedOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's and httpx's included
    scripted_server.set_script("vendor/denied", ModelScript(status_code=401))
    with start(scripted_server, keys=KeyRing(byok=True)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=FAKE_KEY, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as failed:  # the backend's 401
            client.chat.completions.create(model="vendor/denied", messages=FORCED["messages"])
        assert FAKE_KEY not in json.dumps(failed.value.body)
        completion = client.chat.completions.create(**FORCED)
        stream = client.chat.completions.create(**FORCED, stream=True)
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        response = httpx.post(
            f"{server.base_url}/responses",
            json={"model": "openrouter/fusion", "input": QUESTION, "tool_choice": "required"},
            headers={"authorization": f"Bearer {FAKE_KEY}"},
            timeout=30,
        )
        plain = _post(
            server.base_url, {"model": "vendor/plain", "messages": FORCED["messages"]}, FAKE_KEY
        )
        missing = _post(server.base_url, FORCED)
    # Every upstream call (panel, judge, outer, plain) was paid with the caller's key.
    assert {r.model for r in scripted_server.requests} >= {*PANEL, "vendor/plain", "vendor/denied"}
    for request in scripted_server.requests:
        assert request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert missing.status_code == 401
    assert "Authorization" in error_of(missing)["message"]
    # ...and it appears nowhere else: not in any answer, any error, any log line.
    assert "openrouter:fusion" in response.text  # the raw body of the Responses answer
    for text in (completion.model_dump_json(), streamed, response.text, plain.text):
        assert FAKE_KEY not in text
    assert caplog.records  # DEBUG logging was on
    assert FAKE_KEY not in caplog.text
    assert UPSTREAM_KEY not in caplog.text


def test_byok_with_server_keys_takes_the_upstream_key_from_its_header(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    ring = KeyRing([server_keys.key_from_secret("alice", ALICE)], byok=True)
    with start(scripted_server, keys=ring) as server:
        without = _post(server.base_url, FORCED, ALICE)
        assert without.status_code == 401
        assert "x-upstream-api-key" in error_of(without)["message"]
        ok = _post(server.base_url, FORCED, ALICE, **{"x-upstream-api-key": FAKE_KEY})
        assert ok.status_code == 200, ok.text
    assert {r.headers["authorization"] for r in scripted_server.requests} == {f"Bearer {FAKE_KEY}"}


def test_redaction_removes_keys_from_any_text() -> None:
    error = GatewayError(502, f"upstream said: Incorrect API key provided: {FAKE_KEY}")
    assert FAKE_KEY not in json.dumps(error.body())
    assert redact(f"key={ALICE} and {FAKE_KEY}", [ALICE]).count("[redacted]") == 2


# --- spend caps ------------------------------------------------------------------------------


def _worst_case(scripted_server: ScriptedOpenAIServer, tmp_path: Path) -> int:
    """The worst case of FORCED, as the server estimates it (from its own 402)."""
    probe = ServerKey.model_validate({"name": "probe", "key": ALICE, "max_tokens": 1})
    ledger = SpendLedger(tmp_path / "probe.sqlite3")
    with start(scripted_server, keys=KeyRing([probe]), ledger=ledger) as server:
        refused = _post(server.base_url, FORCED, ALICE)
    assert refused.status_code == 402
    worst: int = error_of(refused)["metadata"]["worst_case"]["tokens"]
    return worst


def test_a_spend_cap_admits_the_worst_case_then_refuses(
    scripted_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    worst = _worst_case(scripted_server, tmp_path)
    key = ServerKey.model_validate({"name": "team", "key": ALICE, "max_tokens": worst})
    ledger = SpendLedger(tmp_path / "spend.sqlite3")
    with start(scripted_server, keys=KeyRing([key]), ledger=ledger) as server:
        first = _post(server.base_url, FORCED, ALICE)
        assert first.status_code == 200, first.text
        spent = first.json()["usage"]["total_tokens"]
        info = httpx.get(
            f"{server.base_url}/key", headers={"authorization": f"Bearer {ALICE}"}
        ).json()
        assert info["data"]["usage_tokens"] == spent  # settled with what was really spent
        assert info["data"]["reserved_tokens"] == 0
        assert info["data"]["limit_tokens_remaining"] == worst - spent
        scripted_server.reset()
        second = _post(server.base_url, FORCED, ALICE)
    assert second.status_code == 402
    error = error_of(second)
    assert "spend cap of key 'team'" in error["message"]
    assert error["metadata"]["spent"]["tokens"] == spent
    assert scripted_server.requests == []


def test_a_reservation_holds_the_cap_while_a_run_is_in_flight(
    scripted_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    worst = _worst_case(scripted_server, tmp_path)
    key = ServerKey.model_validate({"name": "team", "key": ALICE, "max_tokens": worst})
    scripted_server.set_script(PANEL[0], ModelScript(time_to_first_token=0.5))
    with start(
        scripted_server, keys=KeyRing([key]), ledger=SpendLedger(tmp_path / "s.db")
    ) as server:
        results: list[httpx.Response] = []
        slow = threading.Thread(
            target=lambda: results.append(_post(server.base_url, FORCED, ALICE))
        )
        slow.start()
        while not scripted_server.requests_for(PANEL[0]):  # the first run is upstream now
            threading.Event().wait(0.01)
        held = _post(server.base_url, FORCED, ALICE)
        slow.join()
    assert held.status_code == 402
    assert error_of(held)["metadata"]["reserved"]["tokens"] == worst
    assert results[0].status_code == 200
    assert len(scripted_server.requests_for(PANEL[1])) == 1  # the refused run never started


def test_the_ledger_charges_an_expired_reservation_once(tmp_path: Path) -> None:
    key = ServerKey.model_validate({"name": "k", "key": ALICE, "max_tokens": 100, "max_usd": 1.0})
    ledger = SpendLedger(tmp_path / "l.db", hold_seconds=0.0)
    stale = ledger.reserve(key, Spend(tokens=60, usd=0.5))  # its process "died"
    threading.Event().wait(0.01)
    with pytest.raises(GatewayError) as over:
        ledger.reserve(key, Spend(tokens=50, usd=0.1))  # the stale one was charged in full
    assert over.value.status == 402
    assert ledger.usage("k").spent_tokens == 60
    ledger.settle(stale, Spend(tokens=10, usd=0.1))  # too late: not charged twice
    assert ledger.usage("k").spent_tokens == 60
    with pytest.raises(GatewayError, match="cannot be bounded"):
        ledger.reserve(key, Spend(tokens=1, usd=None))  # a USD cap needs a known cost
