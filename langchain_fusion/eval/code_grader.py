"""The code grader: run the answer against the item's tests in the sandbox (HumanEval)."""

from __future__ import annotations

import asyncio
import re

from langchain_fusion.eval.graders import Grade
from langchain_fusion.eval.items import EvalItem
from langchain_fusion.eval.sandbox import SandboxLimits, run_python

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.S | re.I)


def extract_code(answer: str) -> str:
    """The code of an answer: its last fenced block that holds code (a ```python block
    preferred), else the whole answer."""
    blocks = [block for block in _FENCE.findall(answer) if block.strip()]
    if not blocks:
        return answer
    return str(blocks[-1])


def build_program(item: EvalItem, answer: str) -> str:
    """HumanEval's program: the prompt (its imports and helpers), the candidate, the tests.

    A candidate that defines the entry point replaces the prompt's stub (the stub, a
    signature with a docstring, is valid Python on its own); anything else is taken as the
    body that completes the prompt, as in the original HumanEval.
    """
    prompt = str(item.fields.get("prompt", ""))
    entry_point = str(item.fields["entry_point"])
    code = extract_code(answer)
    if re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.M):
        program = f"{prompt}\n    pass\n\n{code}"
    else:
        program = f"{prompt}{code}"
    return f"{program}\n\n{item.fields['test']}\n\ncheck({entry_point})\n"


class CodeGrader:
    """Right when the program built from the answer runs its tests and exits with 0."""

    name = "code"
    votable = False

    def __init__(self, *, timeout: float = 10.0, concurrency: int = 2) -> None:
        self.limits = SandboxLimits(timeout=timeout)
        self.concurrency = concurrency
        self._semaphore: asyncio.Semaphore | None = None

    def key(self, answer: str) -> str | None:
        return None

    async def grade(self, item: EvalItem, answer: str) -> Grade:
        if "entry_point" not in item.fields or "test" not in item.fields:
            return Grade(False, "the code grader needs `test` and `entry_point` fields")
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        program = build_program(item, answer)
        async with self._semaphore:
            result = await asyncio.to_thread(run_python, program, self.limits)
        return Grade(result.passed, "tests passed" if result.passed else result.detail)
