"""`POST /v1/messages` requests (Anthropic's shape) as the Chat Completions request they
mean, so that both go through one admission path (`ChatCompletionRequest`, `prepare`).

System text, text blocks, `image` blocks (base64 or URL, as `image_url` parts), `tool_use`
and `tool_result` blocks and Anthropic tools map one to one; `thinking` (a token budget)
becomes the hosted `reasoning.max_tokens`. The `thinking` blocks an assistant turn carries
back are left out: an OpenAI-compatible backend has no field for them (it reasons anew).
A field or block this gateway cannot honour (documents, server tools, ...) is a 400 that
names it, before any upstream call.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_fusion.server.errors import invalid

TRANSLATED = {
    "model",
    "messages",
    "system",
    "max_tokens",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "plugins",
    "metadata",
    "stop_server_tools_when",
    "thinking",
}
"""The Messages fields this gateway reads; any other is refused by name."""


def as_chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """The Chat Completions body of an Anthropic Messages request (400 on what it cannot say)."""
    unknown = sorted(set(body) - TRANSLATED)
    if unknown:
        supported = ", ".join(sorted(TRANSLATED))
        raise invalid(f"{unknown[0]} is not supported here (supported: {supported})", unknown[0])
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        raise invalid("max_tokens: a positive integer is required", "max_tokens")
    messages: list[dict[str, Any]] = []
    if (system := body.get("system")) is not None:
        messages.append({"role": "system", "content": _text(system, "system")})
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise invalid("messages: a non-empty list is required", "messages")
    for index, message in enumerate(raw):
        messages += _message(message, f"messages[{index}]")
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    chat["max_tokens"] = body["max_tokens"]
    for ours, theirs in (("stop", "stop_sequences"), ("stream", "stream")):
        if body.get(theirs) is not None:
            chat[ours] = body[theirs]
    for name in ("temperature", "top_p", "plugins", "stop_server_tools_when"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("tools"):
        chat["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(body["tools"])]
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _choice(body["tool_choice"])
    if (reasoning := _reasoning(body.get("thinking"), body["max_tokens"])) is not None:
        chat["reasoning"] = reasoning
    return chat


def _reasoning(thinking: Any, max_tokens: int) -> dict[str, Any] | None:
    """Anthropic's `thinking` as the hosted `reasoning` (None: no extended thinking)."""
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if thinking is None or kind == "disabled":
        return None
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if kind != "enabled" or not isinstance(budget, int) or isinstance(budget, bool):
        raise invalid(
            "thinking: {type: enabled, budget_tokens: int} or {type: disabled}", "thinking"
        )
    if not 1024 <= budget < max_tokens:
        raise invalid("thinking.budget_tokens: at least 1024 and less than max_tokens", "thinking")
    return {"max_tokens": budget}


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    """An `image` block as a Chat Completions `image_url` part (a data URL for base64)."""
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict) and source.get("data"):
        url = f"data:{source.get('media_type') or 'image/png'};base64,{source['data']}"
    elif kind == "url" and isinstance(source, dict) and source.get("url"):
        url = str(source["url"])
    else:
        raise invalid(f"{where}: an image needs a base64 or url source", where)
    return {"type": "image_url", "image_url": {"url": url}}


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for index, block in enumerate(content):
            if not isinstance(block, dict) or block.get("type") != "text":
                kind = block.get("type") if isinstance(block, dict) else type(block).__name__
                raise invalid(f"{where}[{index}]: a {kind!r} block is not supported here", where)
            parts.append(str(block.get("text", "")))
        return "".join(parts)
    raise invalid(f"{where}: a string or a list of text blocks is required", where)


def _message(message: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise invalid(f"{where}: role must be 'user' or 'assistant'", where)
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": message["role"], "content": content}]
    if not isinstance(content, list):
        raise invalid(f"{where}.content: a string or a list of blocks is required", where)
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        at = f"{where}.content[{index}]"
        if kind == "text":
            texts.append(str(block.get("text", "")))
            parts.append({"type": "text", "text": texts[-1]})
        elif kind == "image" and message["role"] == "user":
            parts.append(_image(block, at))
        elif kind in ("thinking", "redacted_thinking") and message["role"] == "assistant":
            continue  # the model's own reasoning, which an OpenAI-compatible turn cannot carry
        elif kind == "tool_use" and message["role"] == "assistant":
            arguments = json.dumps(block.get("input") or {})
            function = {"name": block.get("name"), "arguments": arguments}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
        elif kind == "tool_result" and message["role"] == "user":
            result = block.get("content", "")
            text = _text(result, at) if result is not None else ""
            out.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
        else:
            raise invalid(f"{at}: a {kind!r} block is not supported here", at)
    if message["role"] == "assistant":
        turn: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
        if calls:
            turn["tool_calls"] = calls
        return [turn]
    if len(parts) > len(texts):  # images: the parts in their order
        return [*out, {"role": "user", "content": parts}]
    return out + ([{"role": "user", "content": "".join(texts)}] if texts else [])


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or not tool.get("name") or "input_schema" not in tool:
        raise invalid(f"{where}: a tool needs 'name' and 'input_schema' (custom tools only)", where)
    function = {"name": tool["name"], "parameters": tool["input_schema"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _choice(choice: Any) -> Any:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise invalid("tool_choice: one of auto, any, none, or {type: tool, name}", "tool_choice")
