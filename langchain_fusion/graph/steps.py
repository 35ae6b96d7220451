"""Each step of the pipeline is written once, as a plan; two small drivers run it.

A plan is a generator that yields `Call`s (call this runnable on this input) and receives
each call's result, or has the call's exception thrown into it at the `yield`, so that it
handles failures where it made the call. `run_plan` drives a plan in a thread of a sync
run, `arun_plan` on the event loop of an async run: the two paths share every decision and
differ only in how a call is made. A driver stops a plan that is abandoned (its result no
longer wanted): no further call is made and no chunk is passed on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from langchain_core.messages import AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.messages.ai import add_ai_message_chunks
from langchain_core.runnables import Runnable, RunnableConfig

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """Call `runnable` on `input`; with `stream`, chunk by chunk, merged into one message."""

    runnable: Runnable[Any, Any]
    input: Any
    stream: bool = False
    on_chunk: Callable[[BaseMessageChunk], None] | None = None
    """Told about every chunk of a streamed call (progress events)."""
    config: RunnableConfig | None = None
    """The call's own config; by default the driver's."""
    kwargs: dict[str, Any] = field(default_factory=dict)


Plan = Generator[Call, Any, T]


class Abandoned(Exception):
    """The plan's result is no longer wanted; raised by the driver, never into the plan."""


@dataclass
class PlanResult(Generic[T]):
    """Where an async driver leaves the plan's result (an async generator cannot return)."""

    value: T | None = None
    done: bool = False


def run_plan(
    plan: Plan[T], config: RunnableConfig, abandoned: Callable[[], bool] = lambda: False
) -> Generator[BaseMessageChunk, None, T]:
    """Drive `plan` synchronously, yielding the chunks of its streamed calls; returns its
    result (`StopIteration.value`, or use `finish`)."""
    step = _start(plan)
    while isinstance(step, Call):
        if abandoned():
            plan.close()
            raise Abandoned
        try:
            if step.stream:
                chunks: list[BaseMessageChunk] = []
                for chunk in step.runnable.stream(step.input, step.config or config, **step.kwargs):
                    if abandoned():  # leaving the loop closes the stream and its connection
                        plan.close()
                        raise Abandoned
                    chunks.append(_chunk(chunk))
                    if step.on_chunk is not None:
                        step.on_chunk(chunks[-1])
                    yield chunks[-1]
                outcome: Any = merge_chunks(chunks)
            else:
                outcome = step.runnable.invoke(step.input, step.config or config, **step.kwargs)
        except Abandoned:
            raise
        except Exception as error:
            step = _throw(plan, error)
        else:
            step = _send(plan, outcome)
    return cast(T, step.value)


async def arun_plan(
    plan: Plan[T],
    config: RunnableConfig,
    result: PlanResult[T],
    abandoned: Callable[[], bool] = lambda: False,
) -> AsyncIterator[BaseMessageChunk]:
    """Drive `plan` on the event loop, yielding the chunks of its streamed calls; the
    plan's result lands in `result`. Cancelling the caller cancels the call in flight."""
    step = _start(plan)
    while isinstance(step, Call):
        if abandoned():
            plan.close()
            raise Abandoned
        try:
            if step.stream:
                chunks: list[BaseMessageChunk] = []
                async for chunk in step.runnable.astream(
                    step.input, step.config or config, **step.kwargs
                ):
                    chunks.append(_chunk(chunk))
                    if step.on_chunk is not None:
                        step.on_chunk(chunks[-1])
                    yield chunks[-1]
                outcome: Any = merge_chunks(chunks)
            else:
                outcome = await step.runnable.ainvoke(
                    step.input, step.config or config, **step.kwargs
                )
        except Exception as error:
            step = _throw(plan, error)
        else:
            step = _send(plan, outcome)
    result.value, result.done = cast(T, step.value), True


def finish(
    plan: Plan[T], config: RunnableConfig, abandoned: Callable[[], bool] = lambda: False
) -> T:
    """Drive `plan` synchronously to its result, ignoring the chunks."""
    driver = run_plan(plan, config, abandoned)
    while True:
        try:
            next(driver)
        except StopIteration as done:
            return cast(T, done.value)


async def afinish(plan: Plan[T], config: RunnableConfig) -> T:
    """Drive `plan` on the event loop to its result, ignoring the chunks."""
    result: PlanResult[T] = PlanResult()
    async for _ in arun_plan(plan, config, result):
        pass
    return cast(T, result.value)


def merge_chunks(chunks: list[BaseMessageChunk]) -> BaseMessage | None:
    """One message from a stream's chunks, merged once (not chunk by chunk)."""
    if not chunks:
        return None
    first, *rest = chunks
    if all(isinstance(chunk, AIMessageChunk) for chunk in chunks):
        return add_ai_message_chunks(cast(AIMessageChunk, first), *cast(list[AIMessageChunk], rest))
    merged = first
    for chunk in rest:
        merged = merged + chunk
    return merged


def _chunk(chunk: Any) -> BaseMessageChunk:
    if not isinstance(chunk, BaseMessageChunk):
        raise TypeError(f"expected a streamed message chunk, got {type(chunk).__name__}")
    return chunk


@dataclass(frozen=True)
class _Done:
    value: Any


def _start(plan: Plan[Any]) -> Call | _Done:
    try:
        return next(plan)
    except StopIteration as done:
        return _Done(done.value)


def _send(plan: Plan[Any], outcome: Any) -> Call | _Done:
    try:
        return plan.send(outcome)
    except StopIteration as done:
        return _Done(done.value)


def _throw(plan: Plan[Any], error: Exception) -> Call | _Done:
    try:
        return plan.throw(error)
    except StopIteration as done:
        return _Done(done.value)


def drain(chunks: Iterator[Any]) -> None:
    """Consume an iterator for its side effects."""
    for _ in chunks:
        pass
