"""One run's context: the resolved set-up, and the run's clock and ledger.

LangGraph hands the context to every node through its `Runtime`, as `ToolNode` gets its
context and stream writer: per-run state belongs to the run. A `FusionContext` is made for
each invocation (`FusionGraph` does it when the caller gives none) and dies with it; nothing
about a run is kept anywhere else, so a cancelled run leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from langchain_fusion.contract.result import TokenUsage
from langchain_fusion.graph.setup import FusionSetup
from langchain_fusion.limits import BudgetSpent, FusionLimits

__all__ = ["Abandon", "BudgetSpent", "FusionContext", "RunClock"]


class RunClock:
    """The run's deadline, quorum clock and spending, shared by its panelists, judge and
    synthesis.

    Thread-safe (sync runs use threads); async waiters get an `asyncio.Event` on the loop
    that asks for one.
    """

    def __init__(self, limits: FusionLimits) -> None:
        self.limits = limits
        self.started = time.monotonic()
        self.deadline_at = self.started + limits.deadline if limits.deadline else None
        self.successes = 0
        self.quorum_at: float | None = None
        self.tokens = 0
        self.cost = 0.0
        self.changed = threading.Condition()
        self._async_events: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    # --- quorum and time ------------------------------------------------------------

    def record_success(self) -> None:
        """A panelist answered; start the grace period once the quorum is reached."""
        with self.changed:
            self.successes += 1
            if self.quorum_at is None and self.successes >= self.limits.min_successful:
                self.quorum_at = time.monotonic()
            self.changed.notify_all()
            events = list(self._async_events)
        for loop, event in events:
            loop.call_soon_threadsafe(event.set)

    def start_stage(self) -> None:
        """A cascade's escalation: the quorum and the straggler grace count afresh from the
        new stage's answers; the deadline and the ledger go on."""
        with self.changed:
            self.successes = 0
            self.quorum_at = None

    @property
    def watching(self) -> bool:
        """Whether panelists need a watcher at all (a deadline or a straggler policy)."""
        return self.deadline_at is not None or self.limits.straggler_grace is not None

    def give_up_at(self) -> float | None:
        """When a panelist still running should stop: the deadline, or quorum plus grace."""
        times = [t for t in (self.deadline_at, self._grace_ends()) if t is not None]
        return min(times) if times else None

    def give_up_reason(self) -> str:
        """Why a panelist was stopped, for `failed_models`."""
        grace_end = self._grace_ends()
        if grace_end is not None and (self.deadline_at is None or grace_end <= self.deadline_at):
            return (
                f"timed out: judged without it {self.limits.straggler_grace:g} s after "
                f"{self.limits.min_successful} panelist(s) answered (straggler policy)"
            )
        return f"timed out: the deliberation deadline of {self.limits.deadline:g} s passed"

    def should_give_up(self) -> bool:
        limit = self.give_up_at()
        return limit is not None and time.monotonic() >= limit

    def seconds_left(self) -> float | None:
        limit = self.give_up_at()
        return None if limit is None else max(0.0, limit - time.monotonic())

    def past_deadline(self) -> bool:
        return self.deadline_at is not None and time.monotonic() >= self.deadline_at

    def quorum_event(self) -> asyncio.Event:
        """An event on the running loop, set whenever a panelist answers."""
        event = asyncio.Event()
        with self.changed:
            self._async_events.append((asyncio.get_running_loop(), event))
        return event

    def forget_event(self, event: asyncio.Event) -> None:
        with self.changed:
            self._async_events = [(lp, ev) for lp, ev in self._async_events if ev is not event]

    def _grace_ends(self) -> float | None:
        if self.quorum_at is None or self.limits.straggler_grace is None:
            return None
        return self.quorum_at + self.limits.straggler_grace

    # --- budget -----------------------------------------------------------------------

    def spend(self, model: str, usage: TokenUsage) -> None:
        """Record a finished call's tokens and cost (reported, else from `prices`)."""
        cost = usage.cost
        price = self.limits.prices.get(model)
        if cost is None and price is not None:
            cost = usage.input_tokens * price.prompt + usage.output_tokens * price.completion
        with self.changed:
            self.tokens += usage.total_tokens
            self.cost += cost or 0.0

    def budget_spent(self) -> str | None:
        """Why no new call may start, or None while the budget lasts."""
        limits = self.limits
        if limits.max_total_tokens is not None and self.tokens >= limits.max_total_tokens:
            return (
                f"budget spent: {self.tokens} tokens of max_total_tokens="
                f"{limits.max_total_tokens}; no new call started"
            )
        if limits.max_cost is not None and self.cost >= limits.max_cost:
            return (
                f"budget spent: ${self.cost:.4f} of max_cost=${limits.max_cost}; "
                "no new call started"
            )
        return None

    def ensure_budget(self) -> None:
        """Raise `BudgetSpent` when no new call may start."""
        if reason := self.budget_spent():
            raise BudgetSpent(reason)


@dataclass
class Abandon:
    """Set when a panelist's result is no longer wanted (deadline, straggler policy): its
    work makes no further call and emits nothing more.

    `lock` is held while the panelist emits and while the flag is set, so that nothing it
    emits can come after the `panel.failed` event that follows the abandonment.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    _set: bool = False

    def set(self) -> None:
        with self.lock:
            self._set = True

    def is_set(self) -> bool:
        return self._set


@dataclass(frozen=True)
class FusionContext:
    """What every node of one run reads: the set-up, the run's clock and whether the
    panelists stream their tokens."""

    setup: FusionSetup
    clock: RunClock
    stream_tokens: bool = False
    """Panelists stream their tokens as `panel.delta` events (otherwise one response each,
    far cheaper); see `graph/progress.py`."""

    @classmethod
    def for_run(cls, setup: FusionSetup, *, stream_tokens: bool = False) -> FusionContext:
        """A fresh context: a new clock and an empty ledger."""
        return cls(setup=setup, clock=RunClock(setup.limits), stream_tokens=stream_tokens)
