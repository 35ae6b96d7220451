"""The scripted OpenAI-compatible server in a child process, for benchmarks.

In the benchmark process the server would share the GIL and the CPU clock with the code
under test: its work would count in `time.process_time()` and slow the client's event
loop. In its own process (spawned, so no thread state is forked) it gets the second core,
the client's CPU figures are the client's alone, and the request log's timestamps still
compare with the client's: both use `time.monotonic()`, which on Linux is the
system-wide `CLOCK_MONOTONIC`.

The child also counts TCP connections the server accepted (by wrapping uvicorn's HTTP
protocol classes), to check that the client reuses one connection pool.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from langchain_fusion.testing import ModelScript

_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Timing:
    """One request as the server logged it (times are `time.monotonic()` seconds)."""

    model: str
    stream: bool
    status_code: int
    received_at: float
    first_byte_at: float | None
    completed_at: float | None
    json_schema: bool
    """The request asked for `response_format: json_schema` (the judge)."""
    tools: int
    """How many tools the request offered."""
    depth_header: str | None
    """The `x-openrouter-fusion-depth` header, when sent."""

    @property
    def duration(self) -> float | None:
        """Server-side seconds from the request's arrival to its last byte."""
        if self.completed_at is None:
            return None
        return self.completed_at - self.received_at


@dataclass(frozen=True)
class ServerStats:
    """What the server process counted since the last reset."""

    connections_opened: int
    peak_open_connections: int
    requests: int
    cpu_seconds: float
    """The server process's CPU time since it started."""


class ServerProcess:
    """`ScriptedOpenAIServer` running in a spawned child process, driven over a pipe."""

    def __init__(
        self,
        scripts: Mapping[str, ModelScript] | None = None,
        default: ModelScript | None = None,
        *,
        use_uvloop: bool = True,
    ) -> None:
        self._scripts = dict(scripts or {})
        self._default = default
        self._use_uvloop = use_uvloop
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._base_url: str | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v1` of the running server."""
        if self._base_url is None:
            raise RuntimeError("the server process is not running")
        return self._base_url

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self._process.pid if self._process is not None else None

    def start(self) -> ServerProcess:
        """Spawn the child and wait until it serves."""
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(
            target=_child_main,
            args=(child, self._scripts, self._default, self._use_uvloop),
            name="bench-scripted-server",
            daemon=True,
        )
        process.start()
        child.close()
        if not parent.poll(_START_TIMEOUT_S):
            process.kill()
            raise RuntimeError("the scripted server process did not start")
        status, value = parent.recv()
        if status != "ok":
            process.kill()
            raise RuntimeError(f"the scripted server process failed: {value}")
        self._conn, self._process, self._base_url = parent, process, str(value)
        return self

    def stop(self) -> None:
        """Stop the server and wait for the child to exit."""
        conn, process = self._conn, self._process
        self._conn = self._process = self._base_url = None
        if conn is not None:
            try:
                conn.send(("stop", None))
                conn.recv()
            except (EOFError, OSError):
                pass
            conn.close()
        if process is not None:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)

    def _call(self, command: str, argument: Any = None) -> Any:
        if self._conn is None:
            raise RuntimeError("the server process is not running")
        with self._lock:
            self._conn.send((command, argument))
            status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"server command {command!r} failed: {value}")
        return value

    def set_script(self, model: str, script: ModelScript) -> None:
        """Replace (or add) one model's script."""
        self._call("set_script", (model, script))

    def set_scripts(self, scripts: Mapping[str, ModelScript]) -> None:
        """Replace (or add) several models' scripts."""
        for model, script in scripts.items():
            self.set_script(model, script)

    def reset(self) -> None:
        """Clear the request log and the connection counters."""
        self._call("reset")

    def timings(self) -> list[Timing]:
        """Every request since the last reset, in arrival order."""
        value = self._call("timings")
        assert isinstance(value, list)
        return value

    def stats(self) -> ServerStats:
        """Connections, requests and CPU counted by the server process."""
        value = self._call("stats")
        assert isinstance(value, ServerStats)
        return value

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class _ConnectionCounter:
    """Counts connections uvicorn accepts; only the server's event loop thread writes."""

    def __init__(self) -> None:
        self.opened = 0
        self.open = 0
        self.peak = 0

    def reset(self) -> None:
        self.opened = 0
        self.peak = self.open

    def install(self) -> None:
        """Wrap `connection_made` / `connection_lost` of uvicorn's HTTP protocols."""
        from uvicorn.protocols.http import h11_impl, httptools_impl

        counter = self
        for cls in (h11_impl.H11Protocol, httptools_impl.HttpToolsProtocol):
            made, lost = cls.connection_made, cls.connection_lost

            def connection_made(self: Any, transport: Any, _made: Any = made) -> None:
                counter.opened += 1
                counter.open += 1
                counter.peak = max(counter.peak, counter.open)
                _made(self, transport)

            def connection_lost(self: Any, exc: Any, _lost: Any = lost) -> None:
                counter.open -= 1
                _lost(self, exc)

            cls.connection_made = connection_made  # type: ignore[method-assign]
            cls.connection_lost = connection_lost  # type: ignore[method-assign]


KEEP_ALIVE_S = 75


def _longer_keep_alive() -> None:
    """Keep idle connections 75 s (nginx's default) instead of uvicorn's 5 s.

    The OpenAI SDK's pool drops idle connections after 5 s too; with equal timeouts a
    client reuses a connection the server is closing at that moment (`ReadError`), which
    hosted APIs, with their longer keep-alive, do not provoke.
    """
    import uvicorn

    original = uvicorn.Config.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("timeout_keep_alive", KEEP_ALIVE_S)
        original(self, *args, **kwargs)

    uvicorn.Config.__init__ = init  # type: ignore[method-assign]


def _timing(request: Any) -> Timing:
    body = request.body if isinstance(request.body, dict) else {}
    response_format = body.get("response_format")
    json_schema = isinstance(response_format, dict) and response_format.get("type") == (
        "json_schema"
    )
    return Timing(
        model=request.model,
        stream=request.stream,
        status_code=request.status_code,
        received_at=request.received_at,
        first_byte_at=request.first_byte_at,
        completed_at=request.completed_at,
        json_schema=json_schema,
        tools=len(body.get("tools") or []),
        depth_header=request.headers.get("x-openrouter-fusion-depth"),
    )


def _child_main(
    conn: Connection,
    scripts: dict[str, ModelScript],
    default: ModelScript | None,
    use_uvloop: bool,
) -> None:
    """The child process: serve, then answer commands until `stop`."""
    try:
        if use_uvloop:
            try:
                import asyncio

                import uvloop

                asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            except ImportError:
                pass
        from langchain_fusion.testing import ScriptedOpenAIServer

        _longer_keep_alive()
        counter = _ConnectionCounter()
        counter.install()
        server = ScriptedOpenAIServer(scripts, default).start()
    except Exception as error:  # reported to the parent, which raises
        conn.send(("error", repr(error)))
        return
    conn.send(("ok", server.base_url))
    try:
        while True:
            command, argument = conn.recv()
            try:
                if command == "stop":
                    server.stop()
                    conn.send(("ok", None))
                    return
                if command == "set_script":
                    model, script = argument
                    server.set_script(model, script)
                    conn.send(("ok", None))
                elif command == "reset":
                    server.reset()
                    counter.reset()
                    conn.send(("ok", None))
                elif command == "timings":
                    conn.send(("ok", [_timing(request) for request in server.requests]))
                elif command == "stats":
                    stats = ServerStats(
                        connections_opened=counter.opened,
                        peak_open_connections=counter.peak,
                        requests=len(server.requests),
                        cpu_seconds=time.process_time(),
                    )
                    conn.send(("ok", stats))
                else:
                    conn.send(("error", f"unknown command {command!r}"))
            except Exception as error:
                conn.send(("error", repr(error)))
    except (EOFError, KeyboardInterrupt):
        server.stop()
