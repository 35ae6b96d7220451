"""Reliability limits of a deliberation: deadline, straggler policy, quorum, budget.

These go beyond the hosted service's parameters. `FusionLimits` is the configuration;
`RunControl` is one run's clock and ledger, shared by its panelists, judge and synthesis.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ConfigDict, Field

from langchain_fusion.parameters import MAX_PANEL
from langchain_fusion.result import TokenUsage

DEFAULT_DEADLINE = 300.0
"""Seconds a whole deliberation may take; a hung panelist never holds it longer."""
TOOL_RESULT_TOKENS = 5_000
"""What one tool step may add to a prompt, for the budget estimate (20 000 chars of page)."""
JUDGE_INSTRUCTION_TOKENS = 600


class ModelPrice(BaseModel):
    """USD per token, as OpenRouter's model list gives them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)


class FusionLimits(BaseModel):
    """How long, how degraded and how expensive a deliberation may get."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_successful: int = Field(default=1, ge=1, le=MAX_PANEL)
    """Fewer answers than this and the run fails (`quorum_not_met`)."""
    straggler_grace: float | None = Field(default=None, ge=0)
    """Seconds to wait for the rest once `min_successful` panelists have answered; then the
    judge starts without them, and they are recorded as timed out. None: wait for all."""
    deadline: float | None = Field(default=DEFAULT_DEADLINE, gt=0)
    """Seconds for the whole deliberation. Panelists still running then are timed out."""
    max_total_tokens: int | None = Field(default=None, gt=0)
    """Tokens (in and out, every inner call) one deliberation may spend."""
    max_cost: float | None = Field(default=None, gt=0)
    """USD one deliberation may spend; needs a price for every model (`prices`) or a
    backend that reports cost."""
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Per-token prices by model name, for the estimate and for backends that report none."""


class BudgetExceededError(ValueError):
    """The run could exceed its budget; raised before any model is called."""


class BudgetSpent(Exception):
    """The budget is spent: no new call starts."""


@dataclass(frozen=True)
class BudgetEstimate:
    """The worst case of one deliberation."""

    calls: int
    input_tokens: int
    output_tokens: int
    cost: float | None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def describe(self) -> str:
        cost = f", ${self.cost:.4f}" if self.cost is not None else ""
        return (
            f"up to {self.calls} calls, {self.input_tokens} input + {self.output_tokens} output "
            f"= {self.total_tokens} tokens{cost}"
        )


def approximate_tokens(messages: Sequence[BaseMessage]) -> int:
    """A tokenizer-free upper-ish estimate: four characters a token, plus framing."""
    return sum(math.ceil(len(message.text) / 4) + 4 for message in messages)


def estimate_budget(
    *,
    prompt_tokens: int,
    panel: Sequence[str],
    judge: str,
    synthesizer: str | None,
    max_completion_tokens: int,
    tool_steps: int,
    judge_tool_steps: int,
    prices: dict[str, ModelPrice],
    judge_attempts: int,
) -> BudgetEstimate:
    """The most a run can spend: every panelist using every tool step, the judge retried."""
    out = max_completion_tokens
    calls = 0
    inputs = outputs = 0
    cost: float | None = 0.0

    def add(model: str, input_tokens: int, output_tokens: int) -> None:
        nonlocal calls, inputs, outputs, cost
        calls += 1
        inputs += input_tokens
        outputs += output_tokens
        price = prices.get(model)
        if price is None or cost is None:
            cost = None
        else:
            cost += input_tokens * price.prompt + output_tokens * price.completion

    for model in panel:
        for step in range(tool_steps + 1):
            add(model, prompt_tokens + step * (out + TOOL_RESULT_TOKENS), out)
    judge_prompt = prompt_tokens + JUDGE_INSTRUCTION_TOKENS + len(panel) * out
    for _ in range(judge_attempts):
        for step in range(judge_tool_steps + 1):
            add(judge, judge_prompt + step * (out + TOOL_RESULT_TOKENS), out)
    if synthesizer is not None:
        add(synthesizer, judge_prompt + out, out)
    return BudgetEstimate(calls=calls, input_tokens=inputs, output_tokens=outputs, cost=cost)


def check_budget(limits: FusionLimits, estimate: BudgetEstimate) -> None:
    """Refuse a run whose worst case could exceed the budget (the estimate in the error)."""
    if limits.max_total_tokens is not None and estimate.total_tokens > limits.max_total_tokens:
        raise BudgetExceededError(
            f"this deliberation could spend {estimate.describe()}, over max_total_tokens="
            f"{limits.max_total_tokens}; lower max_completion_tokens, max_tool_calls or the "
            "panel size, or raise the budget"
        )
    if limits.max_cost is not None:
        if estimate.cost is None:
            raise BudgetExceededError(
                "max_cost needs a price for every model of the run (FusionLimits.prices) to "
                f"bound the cost; estimate without prices: {estimate.describe()}"
            )
        if estimate.cost > limits.max_cost:
            raise BudgetExceededError(
                f"this deliberation could spend {estimate.describe()}, over max_cost="
                f"${limits.max_cost}; lower max_completion_tokens, max_tool_calls or the "
                "panel size, or raise the budget"
            )


class RunControl:
    """One run's deadline, quorum clock and spending, shared by its nodes.

    Thread-safe (sync runs use threads); async waiters get an `asyncio.Event` on the loop
    that asks for one.
    """

    def __init__(self, limits: FusionLimits, now: float | None = None) -> None:
        self.limits = limits
        self.started = time.monotonic() if now is None else now
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

    def should_give_up(self, now: float | None = None) -> bool:
        limit = self.give_up_at()
        return limit is not None and (time.monotonic() if now is None else now) >= limit

    def seconds_left(self) -> float | None:
        limit = self.give_up_at()
        return None if limit is None else max(0.0, limit - time.monotonic())

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

    def ensure_budget(self) -> None:
        """Raise `BudgetSpent` when no new call may start."""
        limits = self.limits
        if limits.max_total_tokens is not None and self.tokens >= limits.max_total_tokens:
            raise BudgetSpent(
                f"budget spent: {self.tokens} tokens of max_total_tokens="
                f"{limits.max_total_tokens}; no new call started"
            )
        if limits.max_cost is not None and self.cost >= limits.max_cost:
            raise BudgetSpent(
                f"budget spent: ${self.cost:.4f} of max_cost=${limits.max_cost}; "
                "no new call started"
            )


class RunRegistry:
    """Each running deliberation's `RunControl`, by the key its state carries.

    Graph state is checkpointable; a lock and a condition are not, so the state holds the
    key and the control lives here until the run ends (or, if a run dies half-way, until
    it is a day old).
    """

    STALE_AFTER = 24 * 3600.0

    def __init__(self) -> None:
        self._runs: dict[str, RunControl] = {}
        self._lock = threading.Lock()

    def open(self, limits: FusionLimits) -> str:
        key = uuid.uuid4().hex
        now = time.monotonic()
        with self._lock:
            stale = [k for k, c in self._runs.items() if now - c.started > self.STALE_AFTER]
            for old in stale:
                del self._runs[old]
            self._runs[key] = RunControl(limits, now)
        return key

    def get(self, key: str | None, limits: FusionLimits) -> RunControl:
        """The run's control; a fresh one when the key is unknown (a resumed checkpoint)."""
        with self._lock:
            control = self._runs.get(key or "")
            if control is None:
                control = RunControl(limits)
                if key:
                    self._runs[key] = control
            return control

    def close(self, key: str | None) -> None:
        with self._lock:
            self._runs.pop(key or "", None)

    def __len__(self) -> int:
        return len(self._runs)


RUNS = RunRegistry()
