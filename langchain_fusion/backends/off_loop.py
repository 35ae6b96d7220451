"""`ChatOpenAIOffLoop`: a big request's conversion runs in a worker thread, not on the loop.

Before a call goes out, `ChatOpenAI` turns every message into a dict and the OpenAI SDK
walks the whole payload again: pure CPU, about 0.3 ms per message, which on the event
loop of a server stalls every other request (a fusion request of 2,000 messages makes
five such calls). For a request over `OFF_LOOP_MESSAGES` messages or `OFF_LOOP_CHARS`
characters, the call runs on `ChatOpenAI`'s sync path in a worker thread (its own
connection pool, thread-safe), and a stream hands its chunks back to the loop as they
come; smaller requests keep the async path. Callbacks run on the loop as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI

OFF_LOOP_MESSAGES = 64
OFF_LOOP_CHARS = 256 * 1024


def is_big(messages: list[BaseMessage]) -> bool:
    """Whether converting `messages` is worth a thread hop."""
    if len(messages) >= OFF_LOOP_MESSAGES:
        return True
    chars = 0
    for message in messages:
        content = message.content
        chars += len(content) if isinstance(content, str) else len(str(content))
        if chars >= OFF_LOOP_CHARS:
            return True
    return False


class ChatOpenAIOffLoop(ChatOpenAI):
    """`ChatOpenAI` whose big requests are converted and sent from a worker thread."""

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming or not is_big(messages):
            return await super()._agenerate(messages, stop, run_manager, **kwargs)
        # No callback fires inside a call that does not stream: none is handed over.
        return await asyncio.to_thread(self._generate, messages, stop, None, **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if not is_big(messages):
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                yield chunk
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stopped = threading.Event()

        def produce() -> None:
            def put(kind: str, item: Any) -> None:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(queue.put_nowait, (kind, item))

            stream = self._stream(messages, stop, None, **kwargs)
            try:
                for chunk in stream:
                    if stopped.is_set():  # the caller left: the upstream stream is closed
                        break
                    put("chunk", chunk)
            except BaseException as error:  # handed to the loop, raised there
                put("error", error)
            else:
                put("end", None)
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()

        context = contextvars.copy_context()
        loop.run_in_executor(None, context.run, produce)
        try:
            while True:
                kind, item = await queue.get()
                if kind == "end":
                    break
                if kind == "error":
                    raise item
                if run_manager is not None:  # as ChatOpenAI's own stream reports tokens
                    await run_manager.on_llm_new_token(item.text, chunk=item)
                yield item
        finally:
            stopped.set()
