"""The scripted OpenAI-compatible server's public names, where they used to live.

Kept so that ``from langchain_fusion.testing.scripted_server import ...`` goes on
working; new code imports from `langchain_fusion.testing`. See docs/testing.md for the
modules behind these names.
"""

from langchain_fusion.testing.script import ModelScript, RecordedRequest
from langchain_fusion.testing.server import ScriptedOpenAIServer

__all__ = ["ModelScript", "RecordedRequest", "ScriptedOpenAIServer"]
