"""Offline testing helpers: a scripted OpenAI-compatible server and its pytest fixtures.

Enable the fixtures with ``pytest_plugins = ["langchain_fusion.testing.pytest_plugin"]``.
"""

from langchain_fusion.testing.scripted_server import (
    ModelScript,
    RecordedRequest,
    ScriptedOpenAIServer,
)

__all__ = ["ModelScript", "RecordedRequest", "ScriptedOpenAIServer"]
