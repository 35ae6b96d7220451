"""The gateway's LangSmith traces, through redaction: no secret reaches a trace.

With `LANGSMITH_TRACING=true` LangChain would trace every run with a default LangSmith
client that posts inputs, outputs and errors as they are (an upstream's error quoting the
key it was sent, a prompt a caller pasted a key into). Each run of the gateway carries
its own `LangChainTracer` instead, whose client's `anonymizer` (LangSmith applies it to
a run's inputs, outputs, error and metadata before posting) redacts every string with
the same by-value redactor as every other outward path; a run that has a LangChainTracer
gets no default one. The client reads `LANGSMITH_ENDPOINT`, `LANGSMITH_API_KEY` and
`LANGSMITH_PROJECT` as LangChain's would.
"""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers import LangChainTracer
from langsmith import Client
from langsmith.utils import tracing_is_enabled

from langchain_fusion.server.redaction import SECRETS, Secrets


def scrubbed(value: Any, secrets: Secrets = SECRETS) -> Any:
    """`value` (JSON: dicts, lists, strings) with every string redacted, keys too."""
    if isinstance(value, str):
        return secrets.redact(value)
    if isinstance(value, dict):
        return {secrets.redact(str(k)): scrubbed(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrubbed(v, secrets) for v in value]
    return value


class Tracing:
    """The tracer each gateway run carries while tracing is on (none otherwise)."""

    def __init__(self, secrets: Secrets = SECRETS) -> None:
        self.secrets = secrets
        self._client: Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Client:
        """The redacting LangSmith client, made on first use (from the environment)."""
        with self._lock:
            if self._client is None:
                self._client = Client(anonymizer=lambda data: scrubbed(data, self.secrets))
            return self._client

    def callbacks(self) -> list[BaseCallbackHandler]:
        """`[LangChainTracer]` through the redacting client when tracing is on, else `[]`."""
        if not tracing_is_enabled():
            return []
        return [LangChainTracer(client=self.client)]

    def close(self) -> None:
        """Post what is still buffered (the client sends runs in the background)."""
        with self._lock:
            client = self._client
        if client is not None:
            client.flush()
