"""Running the server: in this thread (`serve`), in several worker processes
(`serve_workers`, for `--workers N`), or in a background thread (`FusionServer`, for tests
and notebooks).

uvicorn's workers each import the app themselves, so they need it as an import string:
`langchain_fusion.server.config:app_from_environment` builds it from the configuration the
parent put in the environment. The parent binds the socket, so that the port (even 0, a
free one) is known before the workers start, and every worker accepts on it.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette

from langchain_fusion.background import BackgroundServer, bind_socket, http_url

WORKER_FACTORY = "langchain_fusion.server.config:app_from_environment"


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve `app` in this thread until interrupted (Ctrl-C stops it gracefully)."""
    sock = bind_socket(host, port)
    try:
        if announce is not None:
            announce(http_url(host, int(sock.getsockname()[1]), "/v1"))
        config = uvicorn.Config(app, lifespan="off", ws="none", timeout_graceful_shutdown=5)
        with contextlib.suppress(KeyboardInterrupt):
            # uvicorn shuts down gracefully, then re-raises the Ctrl-C it caught: done.
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def serve_workers(
    workers: int,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    announce: Callable[[str], None] | None = None,
    factory: str = WORKER_FACTORY,
) -> None:
    """Serve with `workers` processes, each building the app from the environment
    (`config.CONFIG_ENV`, set by the caller). Ctrl-C or SIGTERM stops them all."""
    from uvicorn.supervisors import Multiprocess

    sock = bind_socket(host, port)
    try:
        if announce is not None:
            announce(http_url(host, int(sock.getsockname()[1]), "/v1"))
        config = uvicorn.Config(
            factory,
            factory=True,
            workers=workers,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=5,
            # A worker answers the supervisor only once it has imported the app (~4 s of
            # LangChain imports, more on a busy machine); the default 5 s kills slow starters.
            timeout_worker_healthcheck=30,
        )
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()


class FusionServer(BackgroundServer):
    """The fusion server on `host` (default 127.0.0.1) and a free port, in a thread.

    Use as a context manager (or `start()` / `stop()`); `base_url` is the `/v1` endpoint
    for `openai.OpenAI(base_url=...)`.
    """

    def __init__(self, app: Starlette, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """A stopped server for `app` (see `create_app`)."""
        # loop="auto": uvloop where it is installed, as `langchain-fusion serve` runs.
        super().__init__(app, host=host, port=port, name="fusion-server", loop="auto")

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT/v1` while running."""
        return self.url("/v1")
