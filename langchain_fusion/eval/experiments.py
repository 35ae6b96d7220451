"""LangSmith: each arm recorded as an experiment (a project whose runs point at the
dataset's examples, with a `correct` feedback score per run). Data that is not a LangSmith
dataset is uploaded as one first, so every evaluation can be compared in LangSmith's UI."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.tracers import LangChainTracer

from langchain_fusion.eval.arms import ArmSpec
from langchain_fusion.eval.items import EvalItem

EXAMPLE_NAMESPACE = uuid.UUID("6f1c0b8e-3a52-5d0e-9c1b-7e4f2a9d8c31")
"""Namespace of the uploaded examples' ids: `uuid5(EXAMPLE_NAMESPACE, "<prefix>:<item id>")`."""


def langsmith_configured() -> bool:
    """Whether a LangSmith key is in the environment."""
    return bool(os.environ.get("LANGSMITH_API_KEY") or os.environ.get("LANGCHAIN_API_KEY"))


class Experiments:
    """Where the runs of each arm go: `<prefix>:<arm>`, one LangSmith project per arm.

    Each project is an experiment on a dataset and each run names its example. With a
    LangSmith dataset (`dataset_name`), that dataset and its examples; with other data, the
    items uploaded as the dataset `<prefix>:data`, one example per item whose id derives
    from the prefix and the item's id, so a resumed run (same prefix) finds its dataset and
    examples again and uploads only those missing.
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
        self.example_ids: dict[str, str] = {}
        """Item id -> LangSmith example id."""

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

    @property
    def data_name(self) -> str:
        """The name of the dataset the items are uploaded as, when they come from elsewhere."""
        return f"{self.prefix}:data"

    def example_id(self, item: EvalItem) -> str:
        """The id of an item's uploaded example: the same for the same run and item."""
        return str(uuid.uuid5(EXAMPLE_NAMESPACE, f"{self.prefix}:{item.id}"))

    def start(self, arms: Sequence[ArmSpec], items: Sequence[EvalItem] = ()) -> None:
        """Create (or, resuming, reuse) one project per arm, an experiment on the dataset:
        the LangSmith dataset read by name, or else `items` uploaded as one."""
        if self.dataset_name is not None:
            self.dataset_id = str(self.client.read_dataset(dataset_name=self.dataset_name).id)
            self.example_ids = {i.id: i.example_id for i in items if i.example_id is not None}
        elif items:
            self.dataset_id = self._upload(items)
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

    def _upload(self, items: Sequence[EvalItem]) -> str:
        """The dataset `<prefix>:data` (created, or read when resuming) holding one example
        per item; returns its id. Examples already there are not sent again."""
        name = self.data_name
        present: set[str] = set()
        if self.client.has_dataset(dataset_name=name):
            dataset = self.client.read_dataset(dataset_name=name)
            present = {str(e.id) for e in self.client.list_examples(dataset_id=dataset.id)}
        else:
            dataset = self.client.create_dataset(
                name,
                description="Items of a langchain-fusion evaluation; one experiment per arm.",
                metadata=self.metadata,
            )
        self.example_ids = {item.id: self.example_id(item) for item in items}
        missing = {
            self.example_ids[item.id]: {
                "id": self.example_ids[item.id],
                "inputs": {"question": item.question},
                "reference_outputs": {"answer": item.reference},
                "metadata": {**item.fields, "item_id": item.id},
            }
            for item in items
            if self.example_ids[item.id] not in present
        }
        if missing:
            self.client.create_examples(dataset_id=dataset.id, examples=list(missing.values()))
        return str(dataset.id)

    def tracer(self, arm: str, item: EvalItem) -> LangChainTracer:
        """The tracer for one (arm, item): its root run is the arm's answer."""
        return LangChainTracer(
            project_name=self.project(arm),
            example_id=self.example_ids.get(item.id) if self.dataset_id is not None else None,
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
