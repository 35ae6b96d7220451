"""Nesting a ChatFusion request's inner runs (outer calls, the fusion tool, the panel, the
judge) under the chat model's own run, in traces and in `astream_events`.

LLM runs are leaves in LangChain (their run managers have no `get_child`), and
`BaseChatModel.stream` / `astream` call `_stream` without the run manager: `ChatFusion`
therefore picks its run id in advance (`parent_run`) and builds the children's callbacks
here (`child_config`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.runnables import RunnableConfig, ensure_config
from langgraph.constants import TAG_NOSTREAM


@dataclass(frozen=True)
class ParentRun:
    """This chat model's run, known before `BaseChatModel.stream` starts it."""

    run_id: UUID
    config: RunnableConfig


def parent_run(config: RunnableConfig | None) -> tuple[RunnableConfig, ParentRun]:
    config = ensure_config(config)
    run_id = config.get("run_id") or uuid4()
    config = {**config, "run_id": run_id}
    return config, ParentRun(run_id=run_id, config=config)


def child_config(
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
    parent: ParentRun | None = None,
) -> RunnableConfig:
    """Callbacks for the inner runs, nested under this chat model's run.

    LLM runs are leaves in LangChain (their managers have no `get_child`); the inner calls
    of a deliberation belong under it all the same, in traces and in `astream_events`.
    They are tagged `nostream`: LangGraph's `messages` stream then shows this model's
    answer once, not the inner models' tokens as well.
    """
    manager: CallbackManager | AsyncCallbackManager
    if run_manager is not None:
        manager_class = (
            AsyncCallbackManager
            if isinstance(run_manager, AsyncCallbackManagerForLLMRun)
            else CallbackManager
        )
        manager = manager_class(handlers=[], parent_run_id=run_manager.run_id)
        manager.set_handlers(run_manager.inheritable_handlers)
        manager.add_tags(run_manager.inheritable_tags)
        manager.add_metadata(_without_ls(run_manager.inheritable_metadata))
    elif parent is not None:
        manager = CallbackManager.configure(
            parent.config.get("callbacks"),
            inheritable_tags=parent.config.get("tags"),
            inheritable_metadata=_without_ls(parent.config.get("metadata") or {}),
        )
        manager.parent_run_id = parent.run_id
    else:
        return {"tags": [TAG_NOSTREAM]}
    manager.add_tags([TAG_NOSTREAM])
    return {"callbacks": manager}


def _without_ls(metadata: dict[str, Any]) -> dict[str, Any]:
    """This model's `ls_*` trace parameters describe it, not the runs inside it."""
    return {k: v for k, v in metadata.items() if not k.startswith("ls_")}
