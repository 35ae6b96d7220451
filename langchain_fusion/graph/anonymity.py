"""What the judge sees of the panel: its answers under model names, or anonymised.

A judge may favour its own answers, the longer answer or the one in a given position (the
MT-Bench study measured all three). With `anonymize_judge`, the judge reads the answers as
`Response A`, `Response B`, ... in an order shuffled with a seed (and the conversation, so
that positions vary from request to request but repeat for the same one); the analysis it
returns is mapped back to the panel's seat labels, so that nothing downstream changes.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field

from langchain_core.messages import BaseMessage

from langchain_fusion.contract.result import FusionAnalysis, PanelResponse

_LABEL = re.compile(r"^\s*(?:response\s+)?([a-z])\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class JudgeView:
    """The answers as the judge reads them, and how its labels map back to the seats."""

    responses: list[PanelResponse]
    to_seat: dict[str, str] = field(default_factory=dict)
    """Anonymous label (`A`, `B`, ...) to seat label; empty when the judge sees names."""

    @classmethod
    def of(
        cls,
        responses: Sequence[PanelResponse],
        conversation: Sequence[BaseMessage],
        *,
        anonymize: bool,
        seed: int,
    ) -> JudgeView:
        if not anonymize:
            return cls(list(responses))
        order = list(responses)
        random.Random(_seed(seed, conversation)).shuffle(order)
        letters = string.ascii_uppercase
        shown = [
            PanelResponse(model=f"Response {letters[n]}", content=response.content)
            for n, response in enumerate(order)
        ]
        return cls(shown, {letters[n]: response.model for n, response in enumerate(order)})

    def restore(self, analysis: FusionAnalysis) -> FusionAnalysis:
        """The analysis with every anonymous label replaced by its seat label."""
        if not self.to_seat:
            return analysis
        restored = analysis.model_copy(deep=True)
        for contradiction in restored.contradictions:
            for stance in contradiction.stances:
                stance.model = self._seat(stance.model)
        for partial in restored.partial_coverage:
            partial.models = [self._seat(model) for model in partial.models]
        for insight in restored.unique_insights:
            insight.model = self._seat(insight.model)
        return restored

    def _seat(self, label: str) -> str:
        match = _LABEL.match(label)
        return self.to_seat.get(match.group(1).upper(), label) if match else label


def _seed(seed: int, conversation: Sequence[BaseMessage]) -> int:
    digest = hashlib.sha256(str(seed).encode())
    for message in conversation:
        digest.update(message.text.encode())
    return int.from_bytes(digest.digest()[:8], "big")
