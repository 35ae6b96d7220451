"""Pytest fixtures for `ScriptedOpenAIServer`.

Enable them in a ``conftest.py`` (or a test module) with::

    pytest_plugins = ["langchain_fusion.testing.pytest_plugin"]

The servers run in their own threads, so the fixtures are plain sync fixtures that
work in sync and async tests alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

import pytest

from langchain_fusion.testing.script import ModelScript
from langchain_fusion.testing.server import ScriptedOpenAIServer

__all__ = ["ScriptedServerFactory", "scripted_server", "scripted_server_factory"]


class ScriptedServerFactory(Protocol):
    """The type of the `scripted_server_factory` fixture."""

    def __call__(
        self,
        scripts: Mapping[str, ModelScript] | None = None,
        default: ModelScript | None = None,
        *,
        strict: bool = True,
    ) -> ScriptedOpenAIServer:
        """Start and return a new server; it is stopped when the test ends."""
        ...


@pytest.fixture
def scripted_server() -> Iterator[ScriptedOpenAIServer]:
    """A started, strict `ScriptedOpenAIServer` where every model follows the default script."""
    with ScriptedOpenAIServer() as server:
        yield server


@pytest.fixture
def scripted_server_factory() -> Iterator[ScriptedServerFactory]:
    """Start servers with given scripts; all of them are stopped at teardown."""
    servers: list[ScriptedOpenAIServer] = []

    def factory(
        scripts: Mapping[str, ModelScript] | None = None,
        default: ModelScript | None = None,
        *,
        strict: bool = True,
    ) -> ScriptedOpenAIServer:
        server = ScriptedOpenAIServer(scripts, default, strict=strict)
        servers.append(server)
        return server.start()

    yield factory
    for server in reversed(servers):
        server.stop()
