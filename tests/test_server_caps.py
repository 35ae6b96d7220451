"""Spend caps and per-request limits hold against an upstream that bills as a real
tokenizer could (issue 18, point 3): UTF-8 bytes, every part, `n`; 50 concurrent requests
on one capped key for each overspend shape, and clients that leave mid-run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import (
    AIMessage,
    HumanMessage,
    ToolMessage,
    convert_to_openai_messages,
)
from test_server_support import PANEL, QUESTION, error_of, healthy, start

from langchain_fusion.limits import ModelPrice, message_tokens, tools_tokens
from langchain_fusion.server import KeyRing, Policy, ServerKey, Spend, SpendLedger
from langchain_fusion.testing import HostileOpenAIServer
from langchain_fusion.testing.hostile import byte_tokens

KEY = "sk-fusion-team-race-0000000000"
AUTH = {"authorization": f"Bearer {KEY}"}
RACERS = 50
ADMITTED = 3
"""The cap holds this many worst cases: every other racer must be refused."""
ARGUMENTS = json.dumps({"notes": "x" * 20_000})
"""A 20 kB tool-call argument: no text, so a text-only estimate misses it."""
TOOL_TURN = [
    {"role": "user", "content": "Look it up."},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": ARGUMENTS},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "done"},
]
CJK = "碳税的利弊" * 600  # 3 000 characters, 9 000 UTF-8 bytes
SHAPES: dict[str, dict[str, Any]] = {
    "tool-call arguments": {"model": "vendor/plain", "messages": TOOL_TURN, "max_tokens": 20},
    "n=10": {
        "model": "vendor/plain",
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 400,
        "n": 10,
    },
    "CJK text": {
        "model": "vendor/plain",
        "messages": [{"role": "user", "content": CJK}],
        "max_tokens": 20,
    },
    "CJK text, fusion": {
        "model": "openrouter/fusion",
        "messages": [{"role": "user", "content": CJK}],
        "tool_choice": "required",
        "max_tokens": 300,
        "tools": [{"type": "openrouter:fusion", "parameters": {"max_completion_tokens": 300}}],
    },
}


@pytest.fixture
def hostile() -> Iterator[HostileOpenAIServer]:
    with HostileOpenAIServer(default=healthy()) as upstream:
        yield upstream


def _worst(upstream: HostileOpenAIServer, tmp_path: Path, body: dict[str, Any]) -> int:
    """The server's worst case of `body`, from its 402 for a one-token cap."""
    probe = ServerKey.model_validate({"name": "probe", "key": KEY, "max_tokens": 1})
    with start(upstream, keys=KeyRing([probe]), ledger=SpendLedger(tmp_path / "p.db")) as server:
        refused = httpx.post(f"{server.base_url}/chat/completions", json=body, headers=AUTH)
    assert refused.status_code == 402, refused.text
    worst: int = error_of(refused)["metadata"]["worst_case"]["tokens"]
    assert upstream.requests == []
    return worst


async def _race(
    url: str, body: dict[str, Any], *, leave_when: HostileOpenAIServer | None = None
) -> list[int]:
    """RACERS concurrent requests; with `leave_when`, every client leaves as soon as that
    upstream has received a panelist's call (the runs are then mid-way)."""
    async with httpx.AsyncClient(timeout=60) as client:
        posts = [
            asyncio.ensure_future(client.post(f"{url}/chat/completions", json=body, headers=AUTH))
            for _ in range(RACERS)
        ]
        if leave_when is not None:
            # The upstream runs on a thread of its own: there is no event to wait on.
            while not leave_when.requests_for(PANEL[0]) and not all(p.done() for p in posts):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            for post in posts:
                post.cancel()
        await asyncio.gather(*posts, return_exceptions=True)
        return [p.result().status_code if not p.cancelled() else 499 for p in posts]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_fifty_racers_never_take_a_key_over_its_cap(
    hostile: HostileOpenAIServer, tmp_path: Path, shape: str
) -> None:
    body = SHAPES[shape]
    cap = ADMITTED * _worst(hostile, tmp_path, body)
    key = ServerKey.model_validate({"name": "team", "key": KEY, "max_tokens": cap})
    ledger = SpendLedger(tmp_path / "spend.db")
    with start(hostile, keys=KeyRing([key]), ledger=ledger) as server:
        statuses = asyncio.run(_race(server.base_url, body))
        spent = httpx.get(f"{server.base_url}/key", headers=AUTH).json()["data"]["usage_tokens"]
    assert set(statuses) <= {200, 402}, statuses
    assert statuses.count(200) >= 1
    # What the upstream billed, as its invoice says, is under the cap; the ledger agrees.
    assert 0 < hostile.billed_tokens <= cap
    assert hostile.billed_tokens <= spent <= cap


def test_racers_that_leave_mid_run_are_charged_for_what_ran(
    hostile: HostileOpenAIServer, tmp_path: Path
) -> None:
    body = SHAPES["CJK text, fusion"]
    cap = ADMITTED * _worst(hostile, tmp_path, body)
    for model in PANEL:  # slow panelists: every client leaves while they work
        hostile.set_script(model, healthy(time_to_first_token=1.0))
    key = ServerKey.model_validate({"name": "team", "key": KEY, "max_tokens": cap})
    ledger = SpendLedger(tmp_path / "spend.db")
    with start(hostile, keys=KeyRing([key]), ledger=ledger) as server:
        statuses = asyncio.run(_race(server.base_url, body, leave_when=hostile))
    # The server has stopped: no call runs any more. Its ledger, read back:
    usage = SpendLedger(tmp_path / "spend.db").usage("team")
    assert set(statuses) <= {402, 499}, statuses
    assert hostile.requests  # panel calls ran for the clients that left...
    assert 0 < hostile.billed_tokens <= cap
    assert usage.reserved_tokens == 0
    assert hostile.billed_tokens <= usage.spent_tokens <= cap  # ...and were charged


def test_max_request_tokens_alone_is_enforced(hostile: HostileOpenAIServer) -> None:
    body = SHAPES["CJK text"]
    with start(hostile, policy=Policy(max_request_tokens=9_000)) as server:
        refused = httpx.post(f"{server.base_url}/chat/completions", json=body)
        small = {**body, "messages": [{"role": "user", "content": "hi"}]}
        admitted = httpx.post(f"{server.base_url}/chat/completions", json=small)
    assert refused.status_code == 402, refused.text
    assert "--max-request-tokens" in error_of(refused)["message"]
    assert admitted.status_code == 200, admitted.text
    assert [r.body["messages"][0]["content"] for r in hostile.requests] == ["hi"]


def test_usd_held_for_runs_in_flight_counts_against_a_usd_cap(tmp_path: Path) -> None:
    key = ServerKey.model_validate({"name": "team", "key": KEY, "max_usd": 1.0})
    ledger = SpendLedger(tmp_path / "spend.db")
    held = ledger.reserve(key, Spend(tokens=10, usd=0.6))
    with pytest.raises(Exception, match="held") as refused:
        ledger.reserve(key, Spend(tokens=10, usd=0.6))
    assert getattr(refused.value, "status", None) == 402
    ledger.settle(held, Spend(tokens=10, usd=0.1))
    ledger.reserve(key, Spend(tokens=10, usd=0.6))  # the settled run freed its hold


def test_a_key_without_a_cap_reports_its_spend(
    hostile: HostileOpenAIServer, tmp_path: Path
) -> None:
    key = ServerKey.model_validate({"name": "free", "key": KEY})
    with start(hostile, keys=KeyRing([key]), ledger=SpendLedger(tmp_path / "s.db")) as server:
        answered = httpx.post(
            f"{server.base_url}/chat/completions", json=SHAPES["CJK text"], headers=AUTH
        )
        data = httpx.get(f"{server.base_url}/key", headers=AUTH).json()["data"]
    assert answered.status_code == 200, answered.text
    assert data["limit_tokens"] is None
    assert data["usage_tokens"] == answered.json()["usage"]["total_tokens"] > 0


@pytest.mark.parametrize(
    "messages",
    [
        [HumanMessage(CJK)],
        [
            HumanMessage(QUESTION),
            AIMessage(
                "", tool_calls=[{"name": "lookup", "args": json.loads(ARGUMENTS), "id": "c1"}]
            ),
            ToolMessage("done", tool_call_id="c1"),
        ],
        [
            HumanMessage(
                [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ]
            )
        ],
        [HumanMessage('\x00\x01 quotes " and \\ backslashes \n' * 200)],
    ],
    ids=["cjk", "tool-call-arguments", "image-part", "escapes"],
)
def test_the_bound_covers_what_the_upstream_bills(messages: list[Any]) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    wire = {"messages": convert_to_openai_messages(messages), "tools": tools}
    assert message_tokens(messages) + tools_tokens(tools) >= byte_tokens(wire)
    assert message_tokens(wire["messages"]) + tools_tokens(tools) >= byte_tokens(wire)
    if isinstance(messages[0].content, list):  # a non-text part costs what an image can
        assert message_tokens(messages) >= 4_096


def test_every_prompt_of_the_pipeline_fits_the_instruction_allowance() -> None:
    from langchain_fusion.graph import prompts
    from langchain_fusion.limits.worst_case import INSTRUCTION_TOKENS

    templates = [
        value for name, value in vars(prompts).items() if name.isupper() and isinstance(value, str)
    ]
    assert templates
    assert sum(len(t.encode()) for t in templates) <= INSTRUCTION_TOKENS
    assert ModelPrice(prompt=0, completion=0)  # the re-export keeps working


LONG_ANSWER = "ø" * 100_000
"""200 kB for 20 output tokens: as many bytes per token as a tokenizer may make it."""
REREAD = {
    "model": "openrouter/fusion",
    "messages": [{"role": "user", "content": QUESTION}],
    "tool_choice": "required",
    "max_tokens": 20,
    "tools": [{"type": "openrouter:fusion", "parameters": {"max_completion_tokens": 20}}],
}


def test_answers_long_per_token_never_take_a_key_over_its_cap(
    hostile: HostileOpenAIServer, tmp_path: Path
) -> None:
    """The judge and the outer model re-read panel answers the pre-run worst case counts
    at 20 tokens each; the upstream bills their 200 kB. A run is stopped before the call
    that would go over what it holds, and 50 racers leave the key under its cap."""
    cap = ADMITTED * _worst(hostile, tmp_path, REREAD)
    for model in PANEL:
        hostile.set_script(model, healthy(reply=LONG_ANSWER))
    key = ServerKey.model_validate({"name": "team", "key": KEY, "max_tokens": cap})
    solo = ServerKey.model_validate({"name": "solo", "key": KEY + "-solo"})
    ring = KeyRing([key, solo])
    with start(hostile, keys=ring, ledger=SpendLedger(tmp_path / "s.db")) as server:
        alone = {"authorization": f"Bearer {KEY}-solo"}
        stopped = httpx.post(f"{server.base_url}/chat/completions", json=REREAD, headers=alone)
        readers = [r for r in hostile.requests if r.model not in PANEL]
        billed_alone = hostile.billed_tokens
        statuses = asyncio.run(_race(server.base_url, REREAD))
        spent = httpx.get(f"{server.base_url}/key", headers=AUTH).json()["data"]["usage_tokens"]
    assert stopped.status_code == 402, stopped.text
    assert "the run was stopped: budget spent" in error_of(stopped)["message"]
    # The panel answered (billed 20 output tokens each), and no call re-read it after.
    assert hostile.requests_for(PANEL[0])
    assert not [r for r in readers if LONG_ANSWER[:1000] in json.dumps(r.body)]
    assert set(statuses) <= {200, 402}, statuses
    billed = hostile.billed_tokens - billed_alone
    assert 0 < billed <= cap
    assert billed <= spent <= cap


def test_the_guard_counts_each_call_from_its_prompt_and_what_was_reported() -> None:
    from uuid import uuid4

    from langchain_core.outputs import ChatGeneration, LLMResult

    from langchain_fusion.limits import BudgetSpent, SpendGuard

    guard = SpendGuard(tokens=1_000, attempts=1)
    params = {"model": "m", "max_tokens": 100}
    first, parent = uuid4(), uuid4()
    guard.on_chat_model_start(
        {},
        [[HumanMessage("x" * 500)]],
        run_id=first,
        parent_run_id=parent,
        invocation_params=params,
    )
    with pytest.raises(BudgetSpent):  # 500 + 100 in flight, and 500 + 100 more: over 1 000
        guard.on_chat_model_start(
            {},
            [[HumanMessage("y" * 500)]],
            run_id=uuid4(),
            parent_run_id=parent,
            invocation_params=params,
        )
    reply = AIMessage(
        "ok", usage_metadata={"input_tokens": 50, "output_tokens": 10, "total_tokens": 60}
    )
    guard.on_llm_end(LLMResult(generations=[[ChatGeneration(message=reply)]]), run_id=first)
    # What was reported replaces what was held: the second call fits now.
    guard.on_chat_model_start(
        {},
        [[HumanMessage("y" * 500)]],
        run_id=uuid4(),
        parent_run_id=parent,
        invocation_params=params,
    )
    # A prompt of multi-byte text is counted by its bytes, whatever its characters.
    with pytest.raises(BudgetSpent):
        guard.on_chat_model_start(
            {},
            [[HumanMessage("ø" * 100)]],
            run_id=uuid4(),
            parent_run_id=parent,
            invocation_params=params,
        )
