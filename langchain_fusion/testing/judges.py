"""A scripted judge that compares the answers it is shown, and an outer model that writes
the majority's answer, for tests of what follows an analysis (a cascade's agreement
check, an evaluation's arms).

`comparing_judge()` is a `ModelScript.json_reply`: it reads the `<response ...>` blocks of
the judge's request and reports a contradiction when their normalised final lines differ,
and consensus when they match. It judges as a careful judge would on short answers: it
says nothing about which answer is right.
"""

from __future__ import annotations

import html
import re
from collections import Counter

from langchain_fusion.contract.answers import final_line, normalise
from langchain_fusion.testing.messages import last_user_text
from langchain_fusion.testing.script import JsonDict, JsonReplyFn, ReplyFn

__all__ = ["comparing_judge", "majority_writer", "responses_in"]

_RESPONSE = re.compile(r'<response model="([^"]*)" id="\d+">\n(.*?)\n</response>', re.S)


def responses_in(body: JsonDict) -> list[tuple[str, str]]:
    """(model, answer) of each response the judge's last user message shows."""
    found = _RESPONSE.findall(last_user_text(body))
    return [(html.unescape(model), answer) for model, answer in found]


def comparing_judge() -> JsonReplyFn:
    """A judge's reply that finds a contradiction exactly when the answers differ."""

    def reply(body: JsonDict) -> JsonDict:
        shown = responses_in(body)
        keys = {normalise(final_line(answer)) for _, answer in shown}
        empty: JsonDict = {"partial_coverage": [], "unique_insights": [], "blind_spots": []}
        if len(keys) <= 1:
            return {"consensus": ["every answer says the same"], "contradictions": [], **empty}
        stances = [{"model": model, "stance": final_line(answer)[:100]} for model, answer in shown]
        return {
            "consensus": [],
            "contradictions": [{"topic": "the answer", "stances": stances[:8]}],
            **empty,
        }

    return reply


def majority_writer() -> ReplyFn:
    """An outer model's final answer that repeats the most common answer it is shown (the
    earliest seat's on a tie): a synthesis whose accuracy can be computed by hand."""

    def reply(body: JsonDict) -> str:
        keys = [final_line(answer).strip() for _, answer in responses_in(body)]
        if not keys:
            return "no answer to choose from"
        counts = Counter(keys)
        top = max(counts.values())
        return next(key for key in keys if counts[key] == top)

    return reply
