"""Short answers read out of a model's text: the last number, the normalised final line.

One definition for every part that compares answers: the evaluation's graders and
majority vote (`eval/graders.py`), and the cascade's matching rules (`contract/cascade.py`).
"""

from __future__ import annotations

import re
import string
from typing import Any

_NUMBER = re.compile(
    r"(?<![\w.])[-−]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])"
    r"|(?<![\w.])[-−]?\.\d+"
)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ANSWER_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:final\s+)?answer\s*(?:is)?\s*[:=-]?\s*", re.I)


def parse_number(text: Any) -> float | None:
    """A number from a reference (int, float or numeric string, `1,234`, `$5`)."""
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return float(text)
    if not isinstance(text, str):
        return None
    cleaned = text.strip().replace(",", "").replace("$", "").replace("−", "-")
    try:
        return float(cleaned)
    except ValueError:
        return None


def last_number(text: str) -> float | None:
    """The last number written in `text` (commas and a `$` allowed), else None."""
    found = _NUMBER.findall(text)
    return parse_number(found[-1]) if found else None


def normalise(text: Any) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD's normalisation)."""
    lowered = str(text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", lowered).split())


def final_line(answer: str) -> str:
    """The answer's last non-empty line, without an `Answer:` prefix."""
    lines = [line for line in answer.strip().splitlines() if line.strip()]
    return _ANSWER_PREFIX.sub("", lines[-1]) if lines else ""


def numbers_agree(a: float, b: float, tolerance: float) -> bool:
    """Equal within `tolerance` relative to the larger magnitude (absolute below 1)."""
    return abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))
