"""`arun_eval` / `run_eval`: every arm on every item, resumable, within a budget."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda

from langchain_fusion import FusionParameters, OpenAICompatibleBackend
from langchain_fusion.eval.arms import ArmAnswer, ArmRunner, ArmSpec, plan_arms
from langchain_fusion.eval.budget import (
    BudgetError,
    check_max_cost,
    cost_of,
    estimate_run,
    fetch_prices,
    parse_prices,
)
from langchain_fusion.eval.config import EvalConfig, EvalConfigError
from langchain_fusion.eval.experiments import Experiments, langsmith_configured
from langchain_fusion.eval.graders import Grader, default_grader, make_grader
from langchain_fusion.eval.items import EvalItem
from langchain_fusion.eval.progress import EvalProgress
from langchain_fusion.eval.report import EvalReport, build_report
from langchain_fusion.eval.store import Record, RecordStore

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"


@dataclass
class _Plan:
    parameters: FusionParameters
    backend: OpenAICompatibleBackend
    grader: Grader
    grader_id: str
    """The grader and, for the LLM grader, its model: stored grades by another are redone."""
    arms: list[ArmSpec]
    keys: dict[str, str]
    prices: dict[str, tuple[float, float]]


def _plan(items: Sequence[EvalItem], config: EvalConfig) -> _Plan:
    if not items:
        raise EvalConfigError("no items to evaluate")
    if config.concurrency < 1:
        raise EvalConfigError("concurrency must be at least 1")
    try:
        parameters = (
            config.parameters
            if isinstance(config.parameters, FusionParameters)
            else FusionParameters(**dict(config.parameters or {}))
        )
        backend = config.backend or OpenAICompatibleBackend()
        grader = make_grader(
            config.grader or default_grader(items),
            llm_model=config.grader_model,
            backend=backend,
            code_timeout=config.code_timeout,
            code_concurrency=min(config.concurrency, 4),
        )
        arms = plan_arms(
            models=list(config.models),
            judge=config.judge,
            kinds=config.arms,
            self_fusion=config.self_fusion,
            judge_variants=config.judge_variants,
            votable=grader.votable,
            cascade_first=config.cascade_first,
            cascade_rule=config.cascade_rule,
        )
        prices = parse_prices(config.prices)
    except ValueError as error:
        raise EvalConfigError(str(error)) from None
    setup = {
        "parameters": parameters.model_dump(mode="json", exclude_none=True),
        "instructions": config.instructions,
        "limits": dict(config.limits or {}),
    }
    keys = {arm.name: arm.fingerprint(setup) for arm in arms}
    grader_id = grader.name if grader.name != "llm" else f"llm:{config.grader_model}"
    return _Plan(parameters, backend, grader, grader_id, arms, keys, prices)


def messages_for(item: EvalItem, instructions: str | None) -> list[BaseMessage]:
    """The conversation every arm receives for an item."""
    system: list[BaseMessage] = [SystemMessage(instructions)] if instructions else []
    return [*system, HumanMessage(item.question)]


def _manifest(out_dir: Path | None) -> dict[str, Any]:
    """The run's identity across resumptions (its LangSmith experiment prefix)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    fresh = {"experiment_prefix": f"fusion-eval-{stamp}-{uuid.uuid4().hex[:6]}"}
    if out_dir is None:
        return fresh
    path = out_dir / MANIFEST_FILE
    if path.exists():
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fresh, indent=2))
    return fresh


async def arun_eval(items: Sequence[EvalItem], config: EvalConfig) -> EvalReport:
    """Run every arm on every item (resuming from `out_dir`), grade, and report.

    Raises `EvalConfigError` (bad configuration) or `BudgetError` (the worst case exceeds
    `max_cost`) before any model is called.
    """
    plan = _plan(items, config)
    out_dir = Path(config.out_dir) if config.out_dir is not None else None
    store = RecordStore(out_dir)
    wanted = {item.id for item in items}
    done: dict[tuple[str, str], Record] = {}
    for record in store.load():
        current = record.item in wanted and plan.keys.get(record.arm) == record.arm_key
        if current and not (config.retry_errors and record.error):
            done[(record.arm, record.item)] = record
    pending = [
        (item, arm) for item in items for arm in plan.arms if (arm.name, item.id) not in done
    ]
    prices = dict(plan.prices)
    if config.max_cost is not None and pending:
        models = {m for _, arm in pending for m in arm.models}
        if config.grader_model is not None:
            models.add(config.grader_model)
        missing = sorted(m for m in models if m not in prices)
        if missing:
            prices.update(fetch_prices(plan.backend, missing))
        unpriced = sorted(m for m in models if m not in prices)
        estimate = estimate_run(
            pending,
            messages_for=lambda item: messages_for(item, config.instructions),
            parameters=plan.parameters,
            prices=prices,
            grader_model=config.grader_model if plan.grader.name == "llm" else None,
        )
        check_max_cost(config.max_cost, estimate, unpriced)

    if stale := [record for record in done.values() if record.grader != plan.grader_id]:
        by_id = {item.id: item for item in items}
        for record in await _regrade(stale, by_id, plan, prices, config):
            store.append(record)
            done[(record.arm, record.item)] = record

    experiments = _experiments(config, out_dir, plan, items)
    runners = {
        arm.name: ArmRunner(
            arm,
            parameters=plan.parameters,
            backend=plan.backend,
            research_tools=config.research_tools,
            limits=config.limits,
            grader=plan.grader,
            seed=config.seed,
            analysis_limits=config.analysis_limits,
        )
        for arm in plan.arms
    }
    progress = EvalProgress(
        [arm.name for arm in plan.arms],
        total=len(items),
        done={arm.name: sum(1 for key in done if key[0] == arm.name) for arm in plan.arms},
        console=config.console,
        enabled=config.progress,
    )
    spent = 0.0
    stopped: str | None = None
    semaphore = asyncio.Semaphore(config.concurrency)
    new_records: list[Record] = []

    async def work(item: EvalItem, arm: ArmSpec) -> None:
        nonlocal spent
        try:
            record = await _run_one(item, arm, runners[arm.name], plan, config, prices, experiments)
            store.append(record)
            new_records.append(record)
            spent += (record.cost or 0.0) + (record.grading_cost or 0.0)
            progress.advance(arm.name, record.correct)
        finally:
            semaphore.release()

    tasks: list[asyncio.Task[None]] = []
    with progress:
        try:
            for item, arm in pending:
                await semaphore.acquire()
                if config.max_cost is not None and spent >= config.max_cost:
                    semaphore.release()
                    stopped = f"max-cost ${config.max_cost:g} reached (spent ${spent:.4f})"
                    break
                tasks.append(asyncio.create_task(work(item, arm)))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            if experiments is not None:
                try:
                    await asyncio.to_thread(experiments.flush)
                except Exception as error:
                    logger.warning("LangSmith: runs still queued were not sent: %s", error)
    records = [*done.values(), *new_records]
    report = build_report(
        plan.arms,
        items,
        records,
        config={
            "models": list(config.models),
            "judge": config.judge,
            "grader": plan.grader.name,
            "grader_model": config.grader_model,
            "seed": config.seed,
            "backend": plan.backend.base_url,
            **config.setup,
        },
        stopped=stopped,
        seed=config.seed,
    )
    if out_dir is not None:
        report.write(out_dir)
    return report


def _experiments(
    config: EvalConfig, out_dir: Path | None, plan: _Plan, items: Sequence[EvalItem]
) -> Experiments | None:
    enabled = config.langsmith if config.langsmith is not None else langsmith_configured()
    if not enabled:
        return None
    prefix = str(_manifest(out_dir)["experiment_prefix"])
    metadata = {"models": list(config.models), "judge": config.judge, "grader": plan.grader.name}
    if config.langsmith_client is not None:
        experiments = Experiments(
            config.langsmith_client,
            prefix,
            dataset_name=config.langsmith_dataset,
            metadata=metadata,
        )
    else:
        experiments = Experiments.from_env(
            prefix, dataset_name=config.langsmith_dataset, metadata=metadata
        )
    try:
        experiments.start(plan.arms, items)
    except Exception as error:  # LangSmith is a record of the run, never a reason to stop it
        logger.warning("LangSmith experiments not recorded: %s", error)
        return None
    return experiments


async def _run_one(
    item: EvalItem,
    arm: ArmSpec,
    runner: ArmRunner,
    plan: _Plan,
    config: EvalConfig,
    prices: Mapping[str, tuple[float, float]],
    experiments: Experiments | None,
) -> Record:
    """Answer, grade and price one (arm, item)."""
    messages = messages_for(item, config.instructions)
    holder: list[ArmAnswer] = []

    async def answer(question: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        result = await runner.answer(item.id, messages, config)
        holder.append(result)
        return {"answer": result.text, "error": result.error}

    run_id = uuid.uuid4()
    run_config: RunnableConfig = {"run_name": arm.name, "run_id": run_id}
    if experiments is not None:
        run_config["callbacks"] = [experiments.tracer(arm.name, item)]
    started = time.monotonic()
    try:
        await RunnableLambda(answer, name=arm.name).ainvoke({"question": item.question}, run_config)
        arm_answer = holder[0]
    except Exception as error:  # an arm's failure is a wrong answer, recorded as such
        arm_answer = ArmAnswer("", error=f"{type(error).__name__}: {error}")
    latency = time.monotonic() - started
    grade = await plan.grader.grade(item, arm_answer.text)
    cost, _ = cost_of(arm_answer.by_model, prices)
    grading_cost, _ = cost_of({config.grader_model or "grader": grade.usage}, prices)
    record = Record(
        arm=arm.name,
        arm_key=plan.keys[arm.name],
        item=item.id,
        answer=arm_answer.text,
        correct=grade.correct,
        detail=grade.detail,
        error=arm_answer.error,
        failure_reason=arm_answer.failure_reason,
        input_tokens=arm_answer.usage.input_tokens,
        output_tokens=arm_answer.usage.output_tokens,
        total_tokens=arm_answer.usage.total_tokens,
        cost=cost,
        latency_s=latency,
        grader=plan.grader_id,
        grading_tokens=grade.usage.total_tokens,
        grading_cost=grading_cost,
        by_model={model: usage.model_dump() for model, usage in arm_answer.by_model.items()},
        votes=arm_answer.votes,
        escalated=arm_answer.escalated,
        run_id=str(run_id) if experiments is not None else None,
    )
    if experiments is not None:
        try:
            await asyncio.to_thread(
                experiments.score, arm.name, str(run_id), grade.correct, grade.detail
            )
        except Exception as error:
            logger.warning(
                "LangSmith feedback for %s on %s not recorded: %s", arm.name, item.id, error
            )
    return record


async def _regrade(
    records: Sequence[Record],
    items: Mapping[str, EvalItem],
    plan: _Plan,
    prices: Mapping[str, tuple[float, float]],
    config: EvalConfig,
) -> list[Record]:
    """Stored answers graded again by this run's grader (no arm is called again)."""
    semaphore = asyncio.Semaphore(config.concurrency)

    async def one(record: Record) -> Record:
        async with semaphore:
            grade = await plan.grader.grade(items[record.item], record.answer)
        grading_cost, _ = cost_of({config.grader_model or "grader": grade.usage}, prices)
        return record.model_copy(
            update={
                "correct": grade.correct,
                "detail": grade.detail,
                "grader": plan.grader_id,
                "grading_tokens": record.grading_tokens + grade.usage.total_tokens,
                "grading_cost": None
                if grading_cost is None or record.grading_cost is None
                else record.grading_cost + grading_cost,
            }
        )

    return list(await asyncio.gather(*(one(record) for record in records)))


def run_eval(items: Sequence[EvalItem], config: EvalConfig) -> EvalReport:
    """`arun_eval` from synchronous code (on a fresh event loop; inside a running loop,
    `await arun_eval(...)` instead)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(arun_eval(items, config))
    raise RuntimeError("run_eval was called inside a running event loop; await arun_eval()")


__all__ = ["BudgetError", "EvalConfig", "EvalConfigError", "arun_eval", "run_eval"]
