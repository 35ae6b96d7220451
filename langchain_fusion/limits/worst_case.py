"""The one worst case: a sound upper bound of what a request can bill, before any call.

The graph's budget guard, the gateway's caps and the eval harness's `max_cost` all use
these functions, with the same inputs:

- every input part counts: message text, every non-text part, tool-call arguments and
  names, tool definitions, the response format; each as the UTF-8 bytes of its JSON form,
  because a byte-level BPE tokenizer never yields more tokens than the bytes it reads (no
  tokenizer download, and it holds for every script: a CJK character is 3 tokens here,
  not a quarter of one). A non-text part (an image, a file) counts at least
  `NON_TEXT_PART_TOKENS`, what providers bill for the largest image;
- every call that can run: each panelist at each research step, the judge and its retry,
  the fallback judge and its retry, the synthesis or every outer call, each at its whole
  output limit, times `n` choices, times (1 + retries) attempts (a retried call may have
  been billed).

What a model re-reads (a panel answer in the judge's prompt) is counted at its writer's
output limit, with room for the tags and escapes that delimit it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from langchain_fusion.limits.settings import ModelPrice

MESSAGE_FRAMING_TOKENS = 64
"""A message's role, name and separators (as a chat template frames it), at most."""
TOOL_CALL_FRAMING_TOKENS = 96
"""A tool call's id, type and separators, at most."""
NON_TEXT_PART_TOKENS = 4_096
"""The least a non-text part (image, file, audio) is counted: above what providers bill
for one image at the largest size they accept."""
INSTRUCTION_TOKENS = 4_096
"""The pipeline's own instructions in any prompt (the judge's system prompt, its request
template and retry prompt; the synthesis prompt), in UTF-8 bytes: a test checks that every
prompt of `graph/prompts.py` fits."""
ANSWER_FRAMING_TOKENS = 256
"""The `<response model=... id=...>` tags around one re-read answer, at most."""
TOOL_RESULT_TOKENS = 4 * 20_000
"""What one research step may add to a prompt: a page of 20 000 characters (the fetch
tool's limit), 4 UTF-8 bytes each at most."""


def text_tokens(text: str) -> int:
    """Tokens `text` can be at most: its UTF-8 bytes (a lone surrogate counts 3)."""
    return len(text.encode("utf-8", "surrogatepass"))


def payload_tokens(value: Any) -> int:
    """Tokens a JSON value can be at most: the UTF-8 bytes of its JSON form."""
    if value is None or value == [] or value == {}:
        return 0
    return text_tokens(json.dumps(value, ensure_ascii=False, default=str))


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return payload_tokens(content)
    if not isinstance(content, list):
        return payload_tokens(content)
    total = 0
    for part in content:
        size = payload_tokens(part)
        is_text = isinstance(part, str) or (
            isinstance(part, Mapping) and part.get("type") in ("text", "input_text", "output_text")
        )
        total += size if is_text else max(size, NON_TEXT_PART_TOKENS)
    return total


def message_tokens(messages: Iterable[BaseMessage | Mapping[str, Any]]) -> int:
    """Tokens a conversation can be at most: every message, every part, every tool call
    (LangChain messages or the wire's dicts)."""
    total = 0
    for message in messages:
        total += MESSAGE_FRAMING_TOKENS
        if isinstance(message, BaseMessage):
            total += _content_tokens(message.content)
            calls = message.tool_calls if isinstance(message, AIMessage) else []
            for call in calls:
                total += TOOL_CALL_FRAMING_TOKENS
                total += payload_tokens(call["name"]) + payload_tokens(call["args"])
            raw = message.additional_kwargs
            total += payload_tokens({k: v for k, v in raw.items() if k != "tool_calls"})
            if isinstance(message, AIMessage) and not message.tool_calls:
                total += payload_tokens(raw.get("tool_calls"))
            continue
        for name, value in message.items():
            size = _content_tokens(value) if name == "content" else payload_tokens(value)
            total += size + text_tokens(name)
            if name == "tool_calls" and isinstance(value, list):
                total += TOOL_CALL_FRAMING_TOKENS * len(value)
    return total


def tools_tokens(tools: Iterable[Any]) -> int:
    """Tokens tool definitions can be at most."""
    return payload_tokens(list(tools))


@dataclass(frozen=True)
class WorstCase:
    """The most a run can bill: its calls, tokens in and out, and USD (None: a model of
    the run has no price, so the cost cannot be bounded)."""

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

    def __add__(self, other: WorstCase) -> WorstCase:
        cost = None if self.cost is None or other.cost is None else self.cost + other.cost
        return WorstCase(
            self.calls + other.calls,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            cost,
        )

    def times(self, count: int) -> WorstCase:
        """`count` runs of this worst case (attempts of a retried call)."""
        return WorstCase(
            self.calls * count,
            self.input_tokens * count,
            self.output_tokens * count,
            None if self.cost is None else self.cost * count,
        )


NOTHING = WorstCase(0, 0, 0, 0.0)


def total(parts: Iterable[WorstCase]) -> WorstCase:
    result = NOTHING
    for part in parts:
        result = result + part
    return result


def call_worst_case(
    model: str,
    input_tokens: int,
    output_tokens: int,
    prices: Mapping[str, ModelPrice],
    *,
    n: int = 1,
    attempts: int = 1,
) -> WorstCase:
    """One call: its prompt once, its output limit for each of `n` choices, each attempt."""
    output = output_tokens * max(1, n)
    price = prices.get(model)
    cost = None if price is None else input_tokens * price.prompt + output * price.completion
    return WorstCase(1, input_tokens, output, cost).times(max(1, attempts))


def reread_tokens(answers: int, output_limit: int) -> int:
    """A prompt's share for `answers` re-read answers of `output_limit` tokens each: their
    text, escaped (an escape adds 3 bytes to a tag of at least 8), and their tags."""
    return answers * (math.ceil(output_limit * 11 / 8) + ANSWER_FRAMING_TOKENS)


def deliberation_worst_case(
    *,
    prompt_tokens: int,
    panel: Sequence[str],
    judge: str,
    synthesizer: str | None,
    max_completion_tokens: int,
    tool_steps: int,
    judge_tool_steps: int,
    prices: Mapping[str, ModelPrice],
    judge_attempts: int,
    judges: Sequence[str] = (),
    attempts: int = 1,
) -> WorstCase:
    """The most a deliberation can bill: every panelist using every research step, each
    judge (`judges`, else `judge`) `judge_attempts / len(judges)` times, the synthesis;
    each call `attempts` times (retries)."""
    out = max_completion_tokens
    prompt = prompt_tokens + INSTRUCTION_TOKENS
    step = out + TOOL_RESULT_TOKENS
    parts = [
        call_worst_case(model, prompt + k * step, out, prices, attempts=attempts)
        for model in panel
        for k in range(tool_steps + 1)
    ]
    judge_prompt = prompt + reread_tokens(len(panel), out)
    seats = list(judges) or [judge]
    per_judge = math.ceil(judge_attempts / len(seats)) if judge_attempts else 0
    for seat in seats:
        for retry in range(per_judge):
            # A retry re-reads the failed reply too.
            reread = judge_prompt + retry * (out + INSTRUCTION_TOKENS)
            parts += [
                call_worst_case(seat, reread + k * step, out, prices, attempts=attempts)
                for k in range(judge_tool_steps + 1)
            ]
    if synthesizer is not None:
        synthesis = judge_prompt + out + INSTRUCTION_TOKENS
        parts.append(call_worst_case(synthesizer, synthesis, out, prices, attempts=attempts))
    return total(parts)


def outer_worst_case(
    model: str,
    prompt_tokens: int,
    output_tokens: int,
    prices: Mapping[str, ModelPrice],
    *,
    calls: int,
    extra_per_call: int = 0,
    n: int = 1,
    attempts: int = 1,
) -> WorstCase:
    """`calls` outer calls, each reading what the ones before wrote (and `extra_per_call`,
    a tool result), each writing its whole output limit."""
    return total(
        call_worst_case(
            model,
            prompt_tokens + k * (output_tokens * max(1, n) + extra_per_call),
            output_tokens,
            prices,
            n=n,
            attempts=attempts,
        )
        for k in range(calls)
    )
