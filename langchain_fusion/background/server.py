"""Serve an ASGI app under uvicorn in a background thread: for tests and notebooks.

`BackgroundServer` binds its listening socket first (so the port is known at once, and
clients may connect into the backlog before uvicorn is up), runs uvicorn on it in a daemon
thread with its own event loop, and stops within about a second. `ScriptedOpenAIServer`,
`FusionServer` and the test suite's stand-ins are subclasses.

This module imports uvicorn and starlette: import it only from modules that need the
``testing`` or ``server`` extra, never from `langchain_fusion` itself or the CLI's top level.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Literal, TypeVar

import uvicorn
from starlette.types import ASGIApp

__all__ = ["BackgroundServer", "LoopSetting", "bind_socket", "http_url"]

LoopSetting = Literal["none", "auto", "asyncio", "uvloop"]
"""uvicorn's ``loop`` setting: ``"none"`` is the asyncio policy's loop (what
`asyncio.run` gives), ``"auto"`` is uvloop when it is installed."""

_STARTUP_TIMEOUT_S = 10.0
_JOIN_TIMEOUT_S = 5.0
_BACKLOG = 128
_Server = TypeVar("_Server", bound="BackgroundServer")


def bind_socket(host: str, port: int, *, backlog: int = _BACKLOG) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: a free port) and listening.

    An IPv6 ``host`` (one with a ``:``) gets an IPv6-only socket. Binding errors read like
    `socket.create_server`'s.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says
    # TCP, and without it Nagle + delayed ACKs add ~40 ms to keep-alive requests.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name not in ("nt", "cygwin"):  # on Windows it would allow stealing the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            message = f"{error.strerror} (while attempting to bind on address {(host, port)!r})"
            raise OSError(error.errno, message) from None
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def http_url(host: str, port: int, path: str = "") -> str:
    """``http://HOST:PORT`` then ``path``; an IPv6 ``host`` goes in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


class _Uvicorn(uvicorn.Server):
    """A uvicorn server whose main loop wakes on an event rather than polling.

    uvicorn checks ``should_exit`` every 0.1 s; tests start and stop many servers, so
    waking at once on `wake` keeps each stop short. Other ticks still run every second.
    """

    def __init__(
        self, config: uvicorn.Config, on_loop: Callable[[asyncio.AbstractEventLoop], None]
    ) -> None:
        super().__init__(config)
        self.on_loop = on_loop
        self.wake: asyncio.Event | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Report the loop that serves to ``on_loop``, then serve (from uvicorn's ``run``)."""
        self.on_loop(asyncio.get_running_loop())
        # uvicorn installs signal handlers only in the main thread, so none here.
        await super().serve(sockets=sockets)

    async def main_loop(self) -> None:
        """Run uvicorn's once-a-second tick until ``should_exit`` (seen as soon as woken)."""
        self.wake = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # on_tick does its 1 s work when counter % 10 == 0
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=1.0)
            should_exit = await self.on_tick(counter)


class BackgroundServer:
    """An ASGI app served by uvicorn on ``host`` and ``port`` (0: a free one), in a thread.

    Use as a context manager (or `start` / `stop`). `url` gives addresses on it while it
    runs. Subclasses may override `_on_serving` (set up state bound to the server's loop)
    and `_on_stopping` (wake handlers that would otherwise hold up the stop).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "background-server",
        loop: LoopSetting = "none",
    ) -> None:
        """A stopped server for ``app``; ``name`` prefixes its thread's name."""
        self.app = app
        self.host = host
        self.__requested_port = port
        self.__name = name
        self.__loop_setting = loop
        self.__port: int | None = None
        self.__server: _Uvicorn | None = None
        self.__thread: threading.Thread | None = None
        self.__socket: socket.socket | None = None
        self.__loop: asyncio.AbstractEventLoop | None = None
        self.__error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self: _Server) -> _Server:
        """Bind, serve in a daemon thread, and return (self) once it accepts requests."""
        if self.__thread is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        sock = bind_socket(self.host, self.__requested_port)
        config = uvicorn.Config(
            self.app,
            log_config=None,  # leave the host process's logging setup alone
            log_level="warning",
            access_log=False,
            lifespan="off",
            interface="asgi3",  # auto-detection takes a bound method for ASGI 2
            ws="none",
            loop=self.__loop_setting,
            timeout_graceful_shutdown=1,
        )
        server = _Uvicorn(config, self.__serving)
        port = int(sock.getsockname()[1])
        thread = threading.Thread(
            target=self.__run,
            args=(server, sock),
            name=f"{self.__name}-{port}",
            daemon=True,  # a forgotten server must not keep the process alive
        )
        self.__error = None
        self.__server, self.__socket, self.__thread, self.__port = server, sock, thread, port
        thread.start()
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                error = self.__error
                self.stop()
                raise RuntimeError(f"{type(self).__name__} failed to start") from error
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving: in-flight requests get a second to finish. A no-op when stopped."""
        thread, server, sock = self.__thread, self.__server, self.__socket
        if thread is None or server is None:
            return
        server.should_exit = True
        loop = self.__loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop may already be closed
                loop.call_soon_threadsafe(self.__wake, server)
        thread.join(timeout=_JOIN_TIMEOUT_S)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=_JOIN_TIMEOUT_S)
        if sock is not None:
            sock.close()
        self.__thread = self.__server = self.__socket = None
        self.__loop = None
        self.__port = None

    def __enter__(self: _Server) -> _Server:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    # -- state -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (only while running)."""
        if self.__port is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        return self.__port

    def url(self, path: str = "") -> str:
        """``http://HOST:PORT`` followed by ``path`` (only while running)."""
        return http_url(self.host, self.port, path)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the app runs on, once serving (for ``call_soon_threadsafe``)."""
        return self.__loop

    # -- hooks -----------------------------------------------------------------------

    def _on_serving(self) -> None:
        """Called on the server's loop before uvicorn starts; state bound to it goes here."""

    def _on_stopping(self) -> None:
        """Called on the server's loop as `stop` begins (``should_exit`` is set already).

        Wake handlers that wait on something here: uvicorn waits for them to finish.
        """

    # -- internals -------------------------------------------------------------------

    def __run(self, server: _Uvicorn, sock: socket.socket) -> None:
        """Thread body: uvicorn on the pre-bound socket, on a fresh event loop."""
        try:
            server.run(sockets=[sock])
        except BaseException as error:  # reported by start(); a thread cannot raise
            self.__error = error

    def __serving(self, loop: asyncio.AbstractEventLoop) -> None:
        self.__loop = loop
        self._on_serving()

    def __wake(self, server: _Uvicorn) -> None:
        self._on_stopping()
        if server.wake is not None:
            server.wake.set()
