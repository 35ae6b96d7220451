"""A Rich progress bar per arm, on stderr (or the console given)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class EvalProgress:
    """One bar per arm: items done of the total, and the running count of correct ones."""

    def __init__(
        self,
        arms: Sequence[str],
        *,
        total: int,
        done: Mapping[str, int],
        console: Console | None = None,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.correct = dict.fromkeys(arms, 0)
        self.completed = {arm: done.get(arm, 0) for arm in arms}
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[correct]} correct (this run)"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            disable=not enabled,
        )
        self._tasks: dict[str, TaskID] = {
            arm: self._progress.add_task(arm, total=total, completed=self.completed[arm], correct=0)
            for arm in arms
        }

    def advance(self, arm: str, correct: bool) -> None:
        """One more item finished for `arm`."""
        self.completed[arm] += 1
        self.correct[arm] += int(correct)
        self._progress.update(self._tasks[arm], advance=1, correct=self.correct[arm])

    def __enter__(self) -> EvalProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()
