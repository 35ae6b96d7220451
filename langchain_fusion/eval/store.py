"""Every finished (arm, item) on disk as it completes: an append-only JSONL file, read back
on the next run so that an interrupted evaluation resumes where it stopped."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

RECORDS_FILE = "records.jsonl"


class Record(BaseModel):
    """One arm's finished answer to one item, graded, with what it cost."""

    model_config = ConfigDict(extra="allow")

    arm: str
    arm_key: str
    item: str
    answer: str
    correct: bool
    detail: str = ""
    error: str | None = None
    failure_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None
    """USD: reported by the backend, else from prices; None when neither is known."""
    latency_s: float = 0.0
    grader: str = ""
    grading_tokens: int = 0
    grading_cost: float | None = None
    by_model: dict[str, dict[str, Any]] = {}
    votes: list[dict[str, Any]] | None = None
    escalated: bool | None = None
    """The cascade arm: whether the whole panel was asked for this item."""
    run_id: str | None = None
    """The LangSmith run of this answer, when recorded there."""


class RecordStore:
    """`records.jsonl` in the output directory (or memory only, without one)."""

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self.path = Path(directory) / RECORDS_FILE if directory is not None else None
        self._lock = threading.Lock()
        self._memory: list[Record] = []

    def load(self) -> list[Record]:
        """Every stored record; a torn last line (a run killed mid-write) is skipped."""
        if self.path is None or not self.path.exists():
            return list(self._memory)
        records = []
        with self.path.open(encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    records.append(Record.model_validate(json.loads(line)))
                except (json.JSONDecodeError, ValidationError):
                    continue
        return records

    def append(self, record: Record) -> None:
        """Write one record durably (flushed and fsynced) before the next starts counting."""
        with self._lock:
            self._memory.append(record)
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            line = record.model_dump_json() + "\n"
            with self.path.open("a", encoding="utf-8") as file:
                # A torn line from a killed run must not swallow this one.
                if file.tell() > 0 and not _ends_with_newline(self.path):
                    file.write("\n")
                file.write(line)
                file.flush()
                os.fsync(file.fileno())


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"
