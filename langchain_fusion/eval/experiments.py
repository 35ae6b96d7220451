"""LangSmith: each arm recorded as an experiment (a project whose runs point at the
dataset's examples, with a `correct` feedback score per run)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.tracers import LangChainTracer

from langchain_fusion.eval.arms import ArmSpec
from langchain_fusion.eval.items import EvalItem


def langsmith_configured() -> bool:
    """Whether a LangSmith key is in the environment."""
    return bool(os.environ.get("LANGSMITH_API_KEY") or os.environ.get("LANGCHAIN_API_KEY"))


class Experiments:
    """Where the runs of each arm go: `<prefix>:<arm>`, one LangSmith project per arm.

    With a LangSmith dataset (`dataset_name`), each project is an experiment on it and each
    run names its example; with other data the projects hold the same runs and scores,
    without a dataset to compare against in LangSmith's UI.
    """

    def __init__(
        self,
        client: Any,
        prefix: str,
        *,
        dataset_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.dataset_name = dataset_name
        self.metadata = dict(metadata or {})
        self.dataset_id: str | None = None
        self.project_ids: dict[str, str] = {}

    @classmethod
    def from_env(
        cls, prefix: str, *, dataset_name: str | None, metadata: Mapping[str, Any]
    ) -> Experiments:
        """A client configured from the environment (`LANGSMITH_API_KEY`, endpoint, ...)."""
        from langsmith import Client

        return cls(Client(), prefix, dataset_name=dataset_name, metadata=metadata)

    def project(self, arm: str) -> str:
        """The project (experiment) name of an arm."""
        return f"{self.prefix}:{arm}"

    def start(self, arms: Sequence[ArmSpec]) -> None:
        """Create (or, resuming, reuse) one project per arm: an experiment on the dataset
        when there is one."""
        if self.dataset_name is not None:
            self.dataset_id = str(self.client.read_dataset(dataset_name=self.dataset_name).id)
        for arm in arms:
            session = self.client.create_project(
                self.project(arm.name),
                upsert=True,
                reference_dataset_id=self.dataset_id,
                metadata={
                    **self.metadata,
                    "arm": arm.name,
                    "arm_kind": arm.kind,
                    "models": list(arm.models),
                },
            )
            self.project_ids[arm.name] = str(session.id)

    def tracer(self, arm: str, item: EvalItem) -> LangChainTracer:
        """The tracer for one (arm, item): its root run is the arm's answer."""
        return LangChainTracer(
            project_name=self.project(arm),
            example_id=item.example_id if self.dataset_id is not None else None,
            client=self.client,
            tags=["fusion-eval"],
        )

    def score(self, arm: str, run_id: str, correct: bool, detail: str) -> None:
        """The grader's verdict as feedback `correct` (1 or 0) on the arm's run."""
        self.client.create_feedback(
            run_id,
            key="correct",
            score=int(correct),
            comment=detail[:1000] or None,
            trace_id=run_id,
            session_id=self.project_ids.get(arm),
        )

    def flush(self) -> None:
        """Send what is still queued."""
        self.client.flush()
