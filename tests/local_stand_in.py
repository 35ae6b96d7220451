"""The embedded model's server, stood in for by the scripted server.

The CLI and `eval --local` start `LocalModelServer` themselves; replacing it with one that
serves from a `ScriptedOpenAIServer` checks their offline wiring (the choice of the
embedded model, its backend: seeds per seat, its settings, the small-model token limits)
in-process and in a second. One real SmolLM2 deliberation runs in test_local_model.py.
"""

from __future__ import annotations

import pytest

from langchain_fusion import local
from langchain_fusion.testing import ScriptedOpenAIServer


class ScriptedLocalServer(local.LocalModelServer):
    """A `LocalModelServer` whose endpoint is a scripted server's."""

    upstream: ScriptedOpenAIServer

    def start(self) -> ScriptedLocalServer:
        self._address = self.upstream.base_url.removesuffix("/v1")
        return self

    def stop(self) -> None:
        self._address = None


@pytest.fixture
def scripted_local_model(
    monkeypatch: pytest.MonkeyPatch, scripted_server: ScriptedOpenAIServer
) -> ScriptedOpenAIServer:
    """`LocalModelServer` serves from the scripted server for this test; yields that server."""
    stand_in = type("ScriptedLocal", (ScriptedLocalServer,), {"upstream": scripted_server})
    monkeypatch.setattr(local, "LocalModelServer", stand_in)
    return scripted_server
