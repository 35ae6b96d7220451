"""The gateway's memory under hostile clients (issue 18, point 5 of the issue), measured on
the installed `langchain-fusion serve` (its RSS read from /proc) against the scripted
backend in a process of its own:

- `uploads`: 3 concurrent chunked uploads of 300 MB each (no `content-length`, so only
  reading can find the size); the gateway must stop reading at its 16 MB limit;
- `reader`: a streamed Responses request whose panelists each write a 300 KB answer (one
  SSE event per word), read at once (the baseline), then one line every 50 ms; the
  stream's buffer is bounded, so a slow reader must not make memory grow with the answer.

    python -m bench.memory                # both; RSS before, peak, after, in MB

Nothing here is a test; the figures go to the issue and the changelog.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from bench.gateway import gateway_process, memory, reset_peak
from bench.profiles import realistic
from bench.server import ServerProcess
from langchain_fusion.testing import ModelScript

MB = 2**20
UPLOADS = 3
UPLOAD_BYTES = 300 * MB
CHUNK = MB
ANSWER_WORDS = 60_000  # "word " * 60 000 = 300 KB
SLOW_READ_S = 0.05
SLOW_READ_FOR_S = 20.0


async def _body(size: int, sent: list[int]) -> AsyncIterator[bytes]:
    yield b'{"model": "openrouter/fusion", "input": "'
    chunk = b"x" * CHUNK
    for _ in range(size // CHUNK):
        sent[0] += CHUNK
        yield chunk
    yield b'"}'


async def _upload(client: httpx.AsyncClient, url: str) -> tuple[int | str, int]:
    sent = [0]
    try:
        response = await client.post(
            f"{url}/responses",
            content=_body(UPLOAD_BYTES, sent),
            headers={"content-type": "application/json"},
        )
        return response.status_code, sent[0]
    except httpx.HTTPError as error:  # the server closed the connection at its limit
        return type(error).__name__, sent[0]


async def uploads(url: str, pid: int) -> dict[str, Any]:
    before = memory(pid)[0]
    reset_peak(pid)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120) as client:
        results = await asyncio.gather(*(_upload(client, url) for _ in range(UPLOADS)))
    after, peak = memory(pid)
    return {
        "uploads": f"{UPLOADS} x {UPLOAD_BYTES // MB} MB, chunked",
        "answers": [status for status, _ in results],
        "client_sent_mb": [round(sent / MB) for _, sent in results],
        "seconds": round(time.perf_counter() - started, 2),
        "rss_before_mb": round(before / MB, 1),
        "rss_peak_mb": round(peak / MB, 1),
        "rss_after_mb": round(after / MB, 1),
    }


async def reader(url: str, pid: int, delay: float) -> dict[str, Any]:
    body = {
        "model": "openrouter/fusion",
        "input": "Write at length.",
        "stream": True,
        "tool_choice": "required",
        "tools": [{"type": "openrouter:fusion", "parameters": {"max_completion_tokens": 90000}}],
    }
    before = memory(pid)[0]
    reset_peak(pid)
    events, samples = 0, [before]
    started = time.perf_counter()
    async with (
        httpx.AsyncClient(timeout=120) as client,
        client.stream("POST", f"{url}/responses", json=body) as response,
    ):
        async for _line in response.aiter_lines():
            events += 1
            if delay:
                await asyncio.sleep(delay)
            if delay or events % 200 == 0:
                samples.append(memory(pid)[0])
            if time.perf_counter() - started > SLOW_READ_FOR_S:
                break
    after, peak = memory(pid)
    return {
        "reader": f"1 line / {delay * 1000:.0f} ms, for {SLOW_READ_FOR_S:g} s at most",
        "panel_answer_kb": round(len("word " * ANSWER_WORDS) / 1024),
        "lines_read": events,
        "rss_before_mb": round(before / MB, 1),
        "rss_max_while_reading_mb": round(max(samples) / MB, 1),
        "rss_peak_mb": round(peak / MB, 1),
        "rss_growth_mb": round((max(samples) - before) / MB, 1),
        "rss_after_mb": round(after / MB, 1),
    }


def main() -> int:
    models = realistic("mem", 2, scale=0.01)
    answer = ModelScript(reply="word " * ANSWER_WORDS)
    scripts = dict.fromkeys(models.panel, answer)
    with (
        ServerProcess(scripts) as backend,
        gateway_process(backend.base_url, models, 1) as (
            url,
            pid,
        ),
    ):
        figures = [asyncio.run(uploads(url, pid))]
        # The same stream read at once (the baseline), then slowly.
        figures += [asyncio.run(reader(url, pid, delay)) for delay in (0.0, SLOW_READ_S)]
        for figure in figures:
            for name, value in figure.items():
                print(f"{name:<26}{value}")
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
