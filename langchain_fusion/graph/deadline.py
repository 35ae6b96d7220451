"""Watching a panelist: give up on it at the deadline, or past the straggler grace.

Async runs cancel the panelist's call (its connection closes). A sync run drives the
panelist in a thread of its own, so that the run can go on without it; the abandoned plan
makes no further call and emits nothing more, but a socket read already in progress cannot
be interrupted and ends on its own timeout, its answer discarded.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from asyncio import FIRST_COMPLETED
from contextlib import suppress
from typing import Any

from langchain_core.runnables import RunnableConfig

from langchain_fusion.graph.context import Abandon, RunClock
from langchain_fusion.graph.state import PanelOutcome
from langchain_fusion.graph.steps import Abandoned, Plan, afinish, finish


class PanelistTimedOut(Exception):
    """A panelist stopped by the deadline or the straggler policy."""


def watch(
    plan: Plan[PanelOutcome], config: RunnableConfig, clock: RunClock, abandon: Abandon
) -> PanelOutcome:
    """Drive `plan` in a thread; give up on it at the deadline or past the straggler grace."""
    if not clock.watching:
        return finish(plan, config, abandon.is_set)
    outcome: list[PanelOutcome] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(finish(plan, config, abandon.is_set))
        except Abandoned:
            pass
        except BaseException as error:
            failure.append(error)
        with clock.changed:
            clock.changed.notify_all()

    context = contextvars.copy_context()  # the graph's config and runtime
    threading.Thread(target=context.run, args=(run,), daemon=True, name="panelist").start()
    with clock.changed:
        while not (outcome or failure):
            if clock.should_give_up():
                abandon.set()
                raise PanelistTimedOut(clock.give_up_reason())
            clock.changed.wait(timeout=clock.seconds_left())
    if failure:
        raise failure[0]
    return outcome[0]


async def awatch(plan: Plan[PanelOutcome], config: RunnableConfig, clock: RunClock) -> Any:
    """Drive `plan` on the loop; cancel it at the deadline or past the straggler grace."""
    if not clock.watching:
        return await afinish(plan, config)
    task = asyncio.ensure_future(afinish(plan, config))
    answered = clock.quorum_event()
    waiter: asyncio.Future[Any] | None = None
    try:
        while True:
            answered.clear()
            waiter = asyncio.ensure_future(answered.wait())
            done, _ = await asyncio.wait(
                {task, waiter}, timeout=clock.seconds_left(), return_when=FIRST_COMPLETED
            )
            waiter.cancel()
            if task in done:
                return task.result()
            if clock.should_give_up():
                raise PanelistTimedOut(clock.give_up_reason())
    finally:
        # Also when the caller cancels us: nothing of this panelist may outlive the run.
        clock.forget_event(answered)
        for pending in (waiter, task):
            if pending is not None and not pending.done():
                pending.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await pending
