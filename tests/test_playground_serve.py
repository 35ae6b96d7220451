"""`serve` and the playground without a browser: the page at `/` (or not, with
`--no-playground`), the URL it prints, its files, and the presets the picker offers.
The browser tests are in test_playground.py."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from langchain_fusion import server as fusion_server
from langchain_fusion.cli import app
from langchain_fusion.contract.presets import PRESETS
from langchain_fusion.server.playground import STATIC


def _serve(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Any, str]:
    """`langchain-fusion serve ARGS` in this process: the app it would serve, and what it
    printed (the server itself is not started)."""
    served: dict[str, Any] = {}

    def fake_serve(app: Any, *, host: str, port: int, announce: Any) -> None:
        served["app"] = app
        announce(f"http://{host}:{port}/v1")

    monkeypatch.setattr(fusion_server, "serve", fake_serve)
    env = {"OPENROUTER_BASE_URL": "http://127.0.0.1:9/v1", "OPENROUTER_API_KEY": "sk-or-test"}
    result = CliRunner().invoke(app, ["serve", "--port", "8123", *args], env=env)
    assert result.exit_code == 0, result.output
    return served["app"], result.stderr


def test_serve_shows_the_playground_at_the_root_and_prints_its_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served, said = _serve(monkeypatch)
    assert "Playground: http://127.0.0.1:8123/\n" in said
    client = TestClient(served)
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<textarea id="prompt"' in page.text
    for name in ("app.js", "api.js", "run.js", "column.js", "markdown.js", "history.js"):
        asset = client.get(f"/playground/{name}")
        assert asset.status_code == 200, name
        assert asset.text == (STATIC / name).read_text()
    # No file outside the page's own list is served, whatever the path says.
    for path in ("/playground/__init__.py", "/playground/..%2F__init__.py", "/playground/x.js"):
        assert client.get(path).status_code == 404, path
    assert client.get("/healthz").json() == {"status": "ok"}


def test_no_playground_serves_the_api_only(monkeypatch: pytest.MonkeyPatch) -> None:
    served, said = _serve(monkeypatch, "--no-playground")
    assert "Playground" not in said
    client = TestClient(served)
    for path in ("/", "/playground/app.js", "/playground/presets.json"):
        missing = client.get(path)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == 404  # the hosted error shape
    assert client.get("/v1/models").status_code == 200


def test_the_preset_picker_offers_the_packages_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    served, _ = _serve(monkeypatch)
    presets = TestClient(served).get("/playground/presets.json").json()
    assert set(presets) == set(PRESETS)
    for name, preset in PRESETS.items():
        assert presets[name]["analysis_models"] == list(preset.analysis_models)
        assert presets[name]["model"] == preset.model


def test_a_server_with_keys_serves_the_page_but_not_the_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served, _ = _serve(monkeypatch, "--server-key", "sk-a-server-key-123456")
    client = TestClient(served)
    assert client.get("/").status_code == 200  # public, like the hosted playground's files
    assert client.get("/v1/models").status_code == 401
    ok = client.get("/v1/models", headers={"authorization": "Bearer sk-a-server-key-123456"})
    assert ok.status_code == 200
