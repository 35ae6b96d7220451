"""One MCP fusion call, from its arguments to its answer, on the gateway's own parts.

The request resolves as a call to the `openrouter/fusion` alias with its parameters
(`server/routing.py`), passes the same allow-list, panel-size and worst-case checks as the
HTTP gateway (`server/policy.py`) before any model is called, and runs on the gateway's
cached `ChatFusion` (`server/catalog.py`), forced to deliberate. Progress is read from the
run's events (`astream_events`), as the gateway's Responses stream reads it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from langchain_core.messages import BaseMessage, HumanMessage

from langchain_fusion.chat_models import ChatFusion
from langchain_fusion.contract import events
from langchain_fusion.contract.result import FusionResult
from langchain_fusion.mcp.schema import ArgumentError, FusionOutput, FusionRun, parse_arguments
from langchain_fusion.server.catalog import ModelCatalog
from langchain_fusion.server.errors import GatewayError, redact, upstream_failure
from langchain_fusion.server.policy import Policy
from langchain_fusion.server.routing import DEFAULT_ROUTER, FusionAsk, resolve

Progress = Callable[[int, int, str], Awaitable[None]]
"""Told `(panelists done, panel size, what happened)` as panelists finish."""
MAX_BACKGROUND_RUNS = 4
"""Background runs in progress at once; a fifth `fusion_start` is refused."""
KEPT_RUNS = 64
"""Finished background runs kept for `fusion_result`; the oldest beyond this are dropped."""


@dataclass
class Prepared:
    """A call that passed every check: what runs, and on what."""

    chat: ChatFusion
    messages: list[BaseMessage]
    panel_size: int


@dataclass
class Outcome:
    answer: str
    result: FusionOutput


@dataclass
class FusionRunner:
    """Checks and runs fusion calls; holds the background runs."""

    catalog: ModelCatalog
    policy: Policy = field(default_factory=Policy)
    secrets: Sequence[str] = ()
    """Every configured key, removed from any error text a client sees."""
    max_background_runs: int = MAX_BACKGROUND_RUNS
    _runs: OrderedDict[str, _BackgroundRun] = field(default_factory=OrderedDict)

    # --- one call ----------------------------------------------------------------------

    def prepare(self, arguments: dict[str, Any]) -> Prepared:
        """Validate, resolve and check the policy (ArgumentError, GatewayError); no call."""
        prompt, overrides = parse_arguments(arguments)
        ask = FusionAsk(model=DEFAULT_ROUTER, alias=DEFAULT_ROUTER, overrides=overrides)
        deliberation = resolve(ask, self.catalog.alias_defaults(DEFAULT_ROUTER))
        self.policy.check_deliberation(deliberation)
        messages: list[BaseMessage] = [HumanMessage(prompt)]
        worst = self.policy.fusion_worst_case(
            deliberation, messages, outer_max_tokens=deliberation.defaults.max_tokens
        )
        self.policy.check_budget(worst)
        return Prepared(
            chat=self.catalog.chat_for(deliberation),
            messages=messages,
            panel_size=len(deliberation.panel),
        )

    async def run(self, prepared: Prepared, progress: Progress | None = None) -> Outcome:
        """Deliberate and write the answer. Cancelling the caller cancels every inner call.

        The SDK cancels a request through an anyio cancel scope, which cancels its task
        again at every await; the graph's own clean-up (cancel the panel, wait for it)
        would be cut short and leave the panel running. So the run has a task of its own,
        cancelled once, and waited for in a shielded scope.
        """
        task = asyncio.ensure_future(self._deliberate(prepared, progress))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({task})
            raise

    async def _deliberate(self, prepared: Prepared, progress: Progress | None) -> Outcome:
        done = 0
        final: Any = None
        try:
            async for event in prepared.chat.astream_events(
                prepared.messages, version="v2", tool_choice="required"
            ):
                kind = event["event"]
                if kind == "on_chat_model_end" and not event["parent_ids"]:
                    final = event["data"]["output"]
                elif kind == "on_custom_event" and event["name"] in _PANELIST_DONE:
                    done += 1
                    if progress is not None:
                        model = event["data"].get("model", "a panelist")
                        verb = "answered" if event["name"] == events.PANEL_COMPLETED else "failed"
                        await progress(done, prepared.panel_size, f"{model} {verb}")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            failure = upstream_failure(error, secrets=self.secrets)
            raise GatewayError(failure.status, failure.message) from None
        if final is None:
            raise GatewayError(502, "the deliberation ended without an answer")
        data = final.response_metadata.get("fusion_result")
        if not data:
            raise GatewayError(502, "the deliberation ended without a result")
        return Outcome(answer=final.text, result=FusionOutput.of(FusionResult.model_validate(data)))

    def describe(self, error: Exception) -> str:
        """What a client reads about a refused or failed call (keys removed)."""
        if isinstance(error, ArgumentError | GatewayError):
            text = error.message if isinstance(error, GatewayError) else str(error)
        else:
            text = f"{type(error).__name__}: {error}"
        return redact(text, self.secrets)

    # --- background runs (fusion_start / fusion_result) ---------------------------------

    def start(self, arguments: dict[str, Any]) -> FusionRun:
        """Check the call now, run it in the background; its id reads the result."""
        in_progress = sum(1 for run in self._runs.values() if not run.task.done())
        if in_progress >= self.max_background_runs:
            raise GatewayError(
                429,
                f"{in_progress} background fusion runs are in progress (the limit is "
                f"{self.max_background_runs}); read one with fusion_result first",
            )
        prepared = self.prepare(arguments)
        run = _BackgroundRun(run_id=f"fusion_{uuid.uuid4().hex}", panel_size=prepared.panel_size)
        run.task = asyncio.ensure_future(self.run(prepared, run.progress))
        self._runs[run.run_id] = run
        while len(self._runs) > KEPT_RUNS:
            oldest = next(iter(self._runs))
            if not self._runs[oldest].task.done():
                break  # never drop a run in progress
            del self._runs[oldest]
        return run.status(self)

    async def result(self, run_id: str, wait_seconds: float = 0.0) -> FusionRun:
        """The run's state, waiting up to `wait_seconds` for it to finish."""
        run = self._runs.get(run_id)
        if run is None:
            raise ArgumentError(f"run_id: no fusion run {run_id!r} on this server")
        if wait_seconds > 0 and not run.task.done():
            await asyncio.wait({run.task}, timeout=wait_seconds)
        return run.status(self)

    async def aclose(self) -> None:
        """Cancel every background run (the server is stopping)."""
        tasks = [run.task for run in self._runs.values() if not run.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


_PANELIST_DONE = frozenset({events.PANEL_COMPLETED, events.PANEL_FAILED})


@dataclass
class _BackgroundRun:
    run_id: str
    panel_size: int
    panel_done: int = 0
    task: asyncio.Future[Outcome] = field(init=False)

    async def progress(self, done: int, total: int, message: str) -> None:
        self.panel_done = done

    def status(self, runner: FusionRunner) -> FusionRun:
        base = {"run_id": self.run_id, "panel_done": self.panel_done, "panel_size": self.panel_size}
        if not self.task.done():
            return FusionRun(status="in_progress", **base)
        if self.task.cancelled():
            return FusionRun(status="failed", error="cancelled", **base)
        error = self.task.exception()
        if isinstance(error, Exception):
            return FusionRun(status="failed", error=runner.describe(error), **base)
        outcome = self.task.result()
        return FusionRun(status="completed", answer=outcome.answer, result=outcome.result, **base)
