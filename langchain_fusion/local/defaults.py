"""The embedded model's name and its offline defaults (short answers, a tight judge schema)."""

from __future__ import annotations

from typing import Any

from langchain_fusion.contract.result import AnalysisLimits

LOCAL_MODEL_NAME = "smollm2-135m-instruct"
"""The name the local server answers to and reports in its responses."""

# Offline defaults: short answers and a tight judge schema keep SmolLM2 on 2 cores brisk.
# The judge gets more room than a panelist: SmolLM2 fills a schema to its bounds, with
# indentation, and an analysis cut off at the token limit is lost.
LOCAL_PANEL_SIZE = 3
LOCAL_PANEL_TOKENS = 300
LOCAL_JUDGE_TOKENS = 1000
LOCAL_ANALYSIS_LIMITS = AnalysisLimits(max_items=2, max_text=120)
LOCAL_MODEL_SETTINGS: dict[str, Any] = {"frequency_penalty": 0.5}
"""A 135M model repeats itself without a penalty."""
