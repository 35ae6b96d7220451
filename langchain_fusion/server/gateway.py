"""What every request handler shares: the catalog, the policy, the keys and the ledger,
and the steps that come before and after a run (authenticate, read the body, reserve the
worst case, settle the actual spend), plus the plumbing of a run (cancel it when the
client leaves, keep an idle stream alive).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import httpx
from starlette.requests import Request

from langchain_fusion.backends import OpenAICompatibleBackend
from langchain_fusion.graph.budget import BudgetEstimate
from langchain_fusion.limits import BudgetSpent
from langchain_fusion.server.admission import admit, parse_body
from langchain_fusion.server.catalog import ModelCatalog
from langchain_fusion.server.errors import GatewayError, upstream_failure
from langchain_fusion.server.keys import KeyRing, Principal, secrets_of
from langchain_fusion.server.ledger import Reservation, Spend, SpendLedger
from langchain_fusion.server.policy import Policy, as_spend
from langchain_fusion.server.tracing import Tracing
from langchain_fusion.server.wire.names import ModelDirectory

logger = logging.getLogger("langchain_fusion.server")

KEEPALIVE_S = 15.0
"""Seconds between SSE comments while a stream waits for the deliberation, so that
proxies and clients do not drop an idle connection."""
MAX_BODY_BYTES = 16 * 1024 * 1024
BODY_TIMEOUT_S = 30.0
"""Seconds a client has to send its whole body (an incomplete one holds no connection)."""
STREAM_BUFFER = 256
"""Events a stream holds for a slow reader before it waits on it."""
SLOW_READER_S = 30.0
"""Seconds a stream waits on a reader with a full buffer before cutting it off."""
OFF_LOOP_BYTES = 256 * 1024
"""A body this big is parsed and admitted in a worker thread: the loop serves others."""
MODEL_LIST_TIMEOUT_S = 5.0
"""Seconds the upstream's model list may take (it only names models early)."""
_T = TypeVar("_T")


class KeepAlive:
    """Yielded by `with_keepalive` when nothing arrived for a while."""


KEEPALIVE = KeepAlive()


class ClientGone(Exception):
    """The client closed the connection before the answer was ready."""


@dataclass
class Gateway:
    """The server's state, shared by every request (it keeps no conversation)."""

    catalog: ModelCatalog
    keys: KeyRing = field(default_factory=KeyRing)
    policy: Policy = field(default_factory=Policy)
    ledger: SpendLedger | None = None
    keepalive_s: float = KEEPALIVE_S
    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout_s: float = BODY_TIMEOUT_S
    model_names: ModelDirectory = field(default_factory=ModelDirectory)
    """The concrete model behind each configured name, as upstream responses reported it."""
    tracing: Tracing = field(default_factory=Tracing)
    """Each run's LangSmith tracer, through redaction (when tracing is on)."""
    _http: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        if self.ledger is None and any(key.capped for key in self.keys.keys):
            raise ValueError("a key with a spend cap needs a spend ledger (SpendLedger)")

    @property
    def http(self) -> httpx.AsyncClient:
        """The pool plain completions are relayed through (made on first use, on the
        serving loop)."""
        if self._http is None:
            backend = self.catalog.backend
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(backend.timeout, connect=10.0),
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        await self.catalog.aclose()
        self.tracing.close()
        if self.ledger is not None:
            self.ledger.close()

    # --- before the run -----------------------------------------------------------------

    def authenticate(self, request: Request) -> Principal:
        return self.keys.authenticate(request.headers)

    async def read_json(self, request: Request) -> dict[str, Any]:
        """The body as a JSON object, admitted (`admission.py`: 400, or 413 over the size
        limit), read no further than the limit and no longer than `body_timeout_s`."""
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > self.max_body_bytes:
            raise GatewayError(413, f"the request body is over {self.max_body_bytes} bytes")
        raw = await read_limited(request, self.max_body_bytes, self.body_timeout_s)
        path = request.url.path
        route = "responses" if path.endswith("/responses") else "chat"
        # Other routes (`/v1/messages`) admit the Chat Completions request they translate to.
        check = path.endswith(("/responses", "/chat/completions"))

        def admitted() -> dict[str, Any]:
            body = parse_body(raw)
            if check:
                admit(body, route)
            return body

        request.state.body_bytes = len(raw)
        return await self.off_loop(request, admitted)

    async def off_loop(self, request: Request, work: Callable[[], _T]) -> _T:
        """`work()`: here for a small request, in a worker thread for a big one (its
        parsing, conversion and worst case are CPU the event loop must not wait for)."""
        if getattr(request.state, "body_bytes", 0) < OFF_LOOP_BYTES:
            return work()
        return await anyio.to_thread.run_sync(work)

    async def reserve(self, principal: Principal, worst: BudgetEstimate) -> Reservation | None:
        """Check the per-request cap, then hold the worst case on the caller's key (every
        key with a ledger, capped or not: `/v1/key` reports what each spent)."""
        self.policy.check_budget(worst)
        key = principal.key
        if self.ledger is None or key is None:
            return None
        return await anyio.to_thread.run_sync(self.ledger.reserve, key, as_spend(worst))

    async def name_models(self, configured: Iterable[str], principal: Principal) -> None:
        """Learn, before the first byte, the concrete models behind the `~…-latest`
        aliases among `configured` (the upstream's model list, `wire/names.py`), asked
        with the key that pays for the request."""
        backend = self.catalog.backend_for(principal.upstream_key)
        await self.model_names.look_up(configured, lambda: self._model_list(backend))

    async def _model_list(self, backend: OpenAICompatibleBackend) -> list[dict[str, Any]]:
        headers = {}
        if backend.api_key is not None:
            headers["authorization"] = f"Bearer {backend.api_key.get_secret_value()}"
        url = backend.base_url.rstrip("/") + "/models"
        response = await self.http.get(url, headers=headers, timeout=MODEL_LIST_TIMEOUT_S)
        response.raise_for_status()
        rows = response.json().get("data")
        return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []

    # --- after it -----------------------------------------------------------------------

    async def answer(
        self,
        request: Request,
        work: Awaitable[_T],
        *,
        principal: Principal,
        reservation: Reservation | None,
        spend: Callable[[_T | None], Spend | None],
        what: str,
    ) -> _T:
        """Await one request's upstream work: cancelled if the client leaves (`ClientGone`),
        a failure in the hosted error shape, the spend settled whatever happens."""
        result: _T | None = None
        try:
            result = await unless_disconnected(request, work)
            return result
        except ClientGone:
            raise
        except Exception as error:
            raise self.failure(error, principal, what) from None
        finally:
            await self.settle(reservation, spend(result))

    @staticmethod
    def failure(error: BaseException, principal: Principal, what: str) -> GatewayError:
        """An upstream failure as the client will see it (the caller's keys redacted), logged;
        the gateway's own errors (a reader cut off) as they are."""
        if isinstance(error, BudgetSpent):  # the in-run guard stopped the run
            failure = GatewayError(402, f"the run was stopped: {error}")
        elif isinstance(error, GatewayError):
            failure = error
        else:
            failure = upstream_failure(error, secrets=secrets_of(principal))
        logger.warning("%s failed (key %s): %s", what, principal.name, failure.message)
        return failure

    async def settle(self, reservation: Reservation | None, spent: Spend | None) -> None:
        """Record what the run spent; runs to the end even when the request is cancelled."""
        if reservation is None or self.ledger is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(self.ledger.settle, reservation, spent)
            except Exception:  # the answer is out; the ledger's own log says why
                logger.exception("could not settle the spend of key %s", reservation.key)


async def read_limited(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, chunk by chunk: a 413 as soon as it passes `limit` (a chunked upload is
    never held whole), a 408 when it takes longer than `timeout_s`."""
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise GatewayError(413, f"the request body is over {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise GatewayError(
            408, f"the request body was not received within {timeout_s:g} s"
        ) from None
    return b"".join(chunks)


async def unless_disconnected(request: Request, work: Awaitable[_T]) -> _T:
    """Await `work`, cancelling it when the client disconnects: no deliberation for nobody."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        raise ClientGone
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


class SlowReader(GatewayError):
    """The client read a stream too slowly for its bounded buffer: it is cut off."""


async def with_keepalive(
    source: AsyncIterator[_T],
    every: float,
    *,
    buffer: int = STREAM_BUFFER,
    slow_reader_s: float = SLOW_READER_S,
) -> AsyncGenerator[_T | KeepAlive, None]:
    """`source`'s items, and `KEEPALIVE` after each `every` seconds without one.

    The source runs in a task of its own feeding a bounded queue (an async generator must
    not be stepped from several tasks); leaving early cancels it, which stops the
    deliberation. A reader that leaves the queue full for `slow_reader_s` is cut off: the
    run is cancelled and `SlowReader` raised in place of the items it did not read, so
    memory never grows with a stream nobody reads.
    """
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=buffer)
    cut_off: list[SlowReader] = []

    async def pump() -> None:
        try:
            async for item in source:
                try:
                    await asyncio.wait_for(queue.put(("item", item)), timeout=slow_reader_s)
                except TimeoutError:
                    cut_off.append(
                        SlowReader(
                            408,
                            f"the stream was not read for {slow_reader_s:g} s with "
                            f"{buffer} events waiting: the run was cancelled",
                        )
                    )
                    close = getattr(source, "aclose", None)
                    if close is not None:
                        await close()  # the deliberation stops
                    return
            await queue.put(("end", None))
        except Exception as error:
            await queue.put(("error", error))

    task = asyncio.ensure_future(pump())
    try:
        while True:
            if cut_off:
                raise cut_off[0]
            try:
                kind, item = await asyncio.wait_for(queue.get(), timeout=every)
            except TimeoutError:
                if cut_off:
                    raise cut_off[0] from None
                yield KEEPALIVE
                continue
            if cut_off:
                raise cut_off[0]
            if kind == "error":
                raise item
            if kind == "end":
                return
            yield item
    finally:
        if not task.done():
            task.cancel()  # the client left, or the consumer failed: stop the run
            with contextlib.suppress(asyncio.CancelledError):
                await task


SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
