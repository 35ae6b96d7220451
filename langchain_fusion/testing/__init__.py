"""Offline testing helpers: a scripted OpenAI-compatible server and its pytest fixtures.

Enable the fixtures with ``pytest_plugins = ["langchain_fusion.testing.pytest_plugin"]``.
The server is strict by default: it refuses, as OpenAI does, conversations a real
provider would refuse (see `langchain_fusion.testing.validation` and docs/testing.md).
"""

from langchain_fusion.testing.hostile import HostileOpenAIServer
from langchain_fusion.testing.script import ModelScript, RecordedRequest
from langchain_fusion.testing.server import ScriptedOpenAIServer

__all__ = ["HostileOpenAIServer", "ModelScript", "RecordedRequest", "ScriptedOpenAIServer"]
