"""Turning a script into one chat completion: a JSON body or an SSE stream, with its pace.

`plan_completion` decides everything up front (faults, text or tool calls, usage, the
pause before each chunk) and returns a `Plan` for `Playback` to send.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_fusion.testing.messages import content_text
from langchain_fusion.testing.playback import (
    SSE_HEADERS,
    Plan,
    json_plan,
    scripted_failure,
    sse,
)
from langchain_fusion.testing.replies import scripted_text
from langchain_fusion.testing.script import JsonDict, ModelScript
from langchain_fusion.testing.tool_calls import (
    auto_tool_call,
    numbered_tool_calls,
    wants_tool_calls,
)

__all__ = ["plan_completion"]

# Word-ish tokens; the `\s+` branch only matches all-whitespace text, so that
# "".join(tokens) always gives back the text exactly.
_TOKEN_RE = re.compile(r"\s*\S+\s*|\s+")
_SYSTEM_FINGERPRINT = "fp_scripted"


def plan_completion(
    model: str,
    body: JsonDict,
    script: ModelScript,
    attempt: int,
    unlucky: bool,
    sequence: int,
) -> Plan:
    """Decide the whole answer to one chat completion request.

    ``attempt`` counts this model's requests (for ``fail_first``), ``unlucky`` is this
    request's ``error_rate`` draw and ``sequence`` numbers the completion id.
    """
    stream = body.get("stream") is True
    if script.hang:
        return Plan(0, [], [(0.0, b"")], hang=True)
    if _should_fail(script, attempt, unlucky):
        return scripted_failure(
            model,
            script.status_code or 500,
            script.retry_after,
            message=script.error_message,
            fields=script.error_fields,
        )

    completion_id = f"chatcmpl-scripted-{sequence}"
    response_model = script.response_model or model
    created = int(time.time())
    if script.malformed_body:
        return _malformed_plan(completion_id, response_model, created, stream)

    text: str | None
    calls: list[JsonDict] = []
    if script.empty:
        text = ""
    elif wants_tool_calls(body, script):
        text = None
        scripted = script.tool_calls
        if scripted == "auto":
            scripted = [auto_tool_call(model, body)]
        calls = numbered_tool_calls(body, scripted or ())
    else:
        text = scripted_text(model, body, script)
    if text:
        text = _apply_stop(text, body.get("stop"))

    pieces = _tokens(text) if text is not None else []
    call_pieces = [_tokens(call["function"]["arguments"]) for call in calls]
    completion_tokens = len(pieces) + sum(len(p) for p in call_pieces)
    usage = _usage(_prompt_tokens(body), completion_tokens, script.cost_per_token)
    finish_reason = "tool_calls" if calls else "stop"
    tps = script.tokens_per_second
    step = 0.0 if tps is None else 1.0 / tps
    # The fields every body and chunk share, in OpenAI's order after "id" and "object".
    head: JsonDict = {
        "created": created,
        "model": response_model,
        "system_fingerprint": _SYSTEM_FINGERPRINT,
    }

    if not stream:
        message: JsonDict = {"role": "assistant", "content": text, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        if script.annotations:
            message["annotations"] = _url_citations(script.annotations)
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        payload = {
            "id": completion_id,
            "object": "chat.completion",
            **head,
            "choices": [choice],
            "usage": usage,
        }
        plan = json_plan(200, payload, text)
        # Same total time as the stream would take, paid before the headers.
        plan.events[0] = (step * completion_tokens, plan.events[0][1])
        return plan

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: JsonDict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        data: JsonDict = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            **head,
            "choices": [choice],
        }
        if include_usage:
            data["usage"] = None
        return sse(data)

    first: JsonDict = {"role": "assistant", "content": "" if text is not None else None}
    events: list[tuple[float, bytes]] = [(0.0, chunk(first))]
    events += [(step, chunk({"content": piece})) for piece in pieces]
    for index, (call, arg_pieces) in enumerate(zip(calls, call_pieces, strict=True)):
        call_head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        events.append((0.0, chunk({"tool_calls": [call_head]})))
        events += [
            (step, chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
            for piece in arg_pieces
        ]
    last_delta: JsonDict = {}
    if script.annotations:
        last_delta["annotations"] = _url_citations(script.annotations)
    events.append((0.0, chunk(last_delta, finish_reason)))
    if include_usage:
        final = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            **head,
            "choices": [],
            "usage": usage,
        }
        events.append((0.0, sse(final)))
    events.append((0.0, b"data: [DONE]\n\n"))
    return Plan(200, SSE_HEADERS, events, response_text=text)


def _should_fail(script: ModelScript, attempt: int, unlucky: bool) -> bool:
    if script.fail_first is not None and attempt <= script.fail_first:
        return True
    if script.error_rate > 0:
        return unlucky
    return script.status_code is not None and script.fail_first is None


def _malformed_plan(completion_id: str, model: str, created: int, stream: bool) -> Plan:
    # Cut off mid-object: valid-looking start, never parseable.
    broken = (
        f'{{"id": "{completion_id}", "object": "chat.completion", "created": {created}, '
        f'"model": "{model}", "choices": [{{"index": 0, "message": {{"content": "tru'
    ).encode()
    if not stream:
        return _raw_json_plan(broken)
    events = [(0.0, b"data: " + broken + b"\n\n"), (0.0, b"data: [DONE]\n\n")]
    return Plan(200, SSE_HEADERS, events)


def _raw_json_plan(data: bytes) -> Plan:
    """A 200 whose body is ``data`` as is, labelled JSON."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    return Plan(200, headers, [(0.0, data)])


def _url_citations(annotations: Sequence[Mapping[str, str]]) -> list[JsonDict]:
    """OpenRouter's shape for the pages a web tool read."""
    return [
        {"type": "url_citation", "url_citation": {"url": a["url"], "title": a.get("title", "")}}
        for a in annotations
    ]


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def _prompt_tokens(body: JsonDict) -> int:
    messages = body.get("messages") or []
    return sum(len(content_text(message.get("content")).split()) for message in messages)


def _usage(prompt: int, completion: int, cost_per_token: float | None) -> JsonDict:
    usage: JsonDict = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cost_per_token is not None:
        usage["cost"] = (prompt + completion) * cost_per_token
    return usage


def _apply_stop(text: str, stop: Any) -> str:
    """``text`` cut before the first occurrence of any stop sequence."""
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    cut = len(text)
    for sequence in sequences:
        if isinstance(sequence, str) and sequence:
            found = text.find(sequence)
            if 0 <= found < cut:
                cut = found
    return text[:cut]
