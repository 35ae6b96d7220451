"""The model catalog under bring-your-own-key: a plain model for a caller's key is built
without deadlocking the server (issue 18, point 1)."""

from __future__ import annotations

import threading

import httpx
from pydantic import SecretStr
from test_server_support import QUESTION, settings, start

from langchain_fusion.server import KeyRing, fusion_models
from langchain_fusion.server.catalog import ModelCatalog
from langchain_fusion.testing import ScriptedOpenAIServer

CALLER_KEY = "caller-upstream-token-not-sk-shaped"


def test_a_plain_model_for_a_callers_key_is_built_and_cached(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    catalog = ModelCatalog(fusion_models(**settings(scripted_server)))
    built: list[object] = []
    worker = threading.Thread(
        target=lambda: built.extend(
            catalog.plain_model("vendor/plain", SecretStr(CALLER_KEY)) for _ in range(2)
        ),
        daemon=True,  # a deadlocked thread must not keep the test process alive
    )
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "plain_model deadlocked on the catalog's lock"
    first, again = built
    assert first is again  # cached per (model, key)
    assert catalog.plain_model("vendor/plain", None) is not first  # the server's key: its own


def test_a_plain_responses_request_on_byok_answers_and_the_server_stays_up(
    scripted_server: ScriptedOpenAIServer,
) -> None:
    auth = {"authorization": f"Bearer {CALLER_KEY}"}
    with start(scripted_server, keys=KeyRing(byok=True)) as server:
        answered = httpx.post(
            f"{server.base_url}/responses",
            json={"model": "vendor/plain", "input": QUESTION},
            headers=auth,
            timeout=20,
        )
        health = httpx.get(server.url("/healthz"), timeout=10)
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "completed"
    assert health.json() == {"status": "ok"}
    (upstream,) = scripted_server.requests
    assert upstream.headers["authorization"] == f"Bearer {CALLER_KEY}"
