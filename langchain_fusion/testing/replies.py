"""What a scripted model says when the script leaves it open: prose, or JSON that fits.

Both are deterministic: the same model and request give the same words in every run,
and different models phrase the same answer differently, as a real panel would.
"""

from __future__ import annotations

import json

from langchain_fusion.testing.messages import (
    content_text,
    last_user_index,
    tool_results_after_user,
)
from langchain_fusion.testing.schema_examples import schema_example, stable_digest
from langchain_fusion.testing.script import JsonDict, ModelScript

__all__ = ["default_reply", "json_format", "json_text", "scripted_text"]

_OPENERS = (
    "In short,",
    "Put simply,",
    "Briefly,",
    "To be direct,",
    "Overall,",
    "At its core,",
)
_CLAIMS = (
    "the answer turns on a few well-understood principles rather than any single fact.",
    "the most reliable view comes from weighing the evidence before drawing conclusions.",
    "it is best understood by separating what is known from what is assumed.",
    "the core idea is simple, though the details reward a careful second look.",
    "most of the answer follows from first principles and a little context.",
    "the practical answer differs slightly from the textbook one, for good reasons.",
)
_REASONS = (
    "Experts broadly agree on the main points, while the edge cases remain debated.",
    "Concrete examples help, because they show where the general rule stops applying.",
    "Trade-offs matter here: each option gains something and gives something up.",
    "History explains much of it, since earlier choices shaped the current situation.",
    "The numbers support this reading, although sources measure things differently.",
    "A step-by-step view makes the reasoning easy to check and to repeat.",
)
_CLOSINGS = (
    "That is the short version; more detail is available on request.",
    "In summary, the claim holds in most ordinary cases.",
    "So the sensible answer is a qualified yes, with the caveats above.",
    "Taken together, these points give a balanced and usable answer.",
    "This should be a solid starting point for further reading.",
    "Those are the essentials, stated as plainly as possible.",
)


def scripted_text(model: str, body: JsonDict, script: ModelScript) -> str:
    """The text answer: JSON when the request asks for it, else the script's reply."""
    if json_format(body) is not None:
        return json_text(model, body, script)
    if script.reply is None:
        return default_reply(model, body)
    if isinstance(script.reply, str):
        return script.reply
    return str(script.reply(body))


def default_reply(model: str, body: JsonDict) -> str:
    """A deterministic ~40-word answer whose phrasing depends on the model name."""
    messages: list[JsonDict] = body.get("messages") or []
    index = last_user_index(messages)
    question = content_text(messages[index].get("content")) if index >= 0 else ""
    digest = stable_digest(model)
    sentences = [
        f"[{model}] On '{_clip(question, 80) or 'the request'}':",
        _OPENERS[digest[0] % len(_OPENERS)],
        _CLAIMS[digest[1] % len(_CLAIMS)],
        _REASONS[digest[2] % len(_REASONS)],
        _CLOSINGS[digest[3] % len(_CLOSINGS)],
    ]
    tool_results = tool_results_after_user(messages)
    if tool_results:
        # Lets tests see that a tool's output made it back to the model.
        result = _clip(content_text(tool_results[-1].get("content")), 80)
        sentences.append(f"The tool returned: {result}")
    return " ".join(sentences)


def json_format(body: JsonDict) -> JsonDict | None:
    """The request's ``response_format`` when it asks for JSON, else None."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_schema",
        "json_object",
    ):
        return response_format
    return None


def json_text(model: str, body: JsonDict, script: ModelScript) -> str:
    """The JSON answer: the script's ``json_reply``, else one that fits the schema."""
    reply = script.json_reply
    if callable(reply):
        reply = reply(body)
    if isinstance(reply, str):
        return reply
    if reply is not None:
        return json.dumps(reply)
    response_format = json_format(body) or {}
    schema = (response_format.get("json_schema") or {}).get("schema")
    if isinstance(schema, dict):
        return json.dumps(schema_example(model, schema, "answer"))
    # json_object without a schema: any object will do; keep the prose for context.
    return json.dumps({"model": model, "answer": default_reply(model, body)})


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."
