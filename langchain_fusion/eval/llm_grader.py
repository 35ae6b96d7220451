"""The LLM grader: a model the user names judges free-form answers against the reference,
through `openevals`' correctness prompt."""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from langchain_fusion import OpenAICompatibleBackend, TokenUsage
from langchain_fusion.eval.graders import Grade
from langchain_fusion.eval.items import EvalItem


class _UsageCollector(BaseCallbackHandler):
    """Tokens and reported cost of the grader's calls."""

    def __init__(self) -> None:
        self.usage = TokenUsage()
        self._lock = threading.Lock()

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                if not isinstance(generation, ChatGeneration):
                    continue
                message: BaseMessage = generation.message
                metadata = getattr(message, "usage_metadata", None) or {}
                cost = message.response_metadata.get("cost")
                with self._lock:
                    self.usage += TokenUsage(
                        input_tokens=metadata.get("input_tokens", 0),
                        output_tokens=metadata.get("output_tokens", 0),
                        total_tokens=metadata.get("total_tokens", 0),
                        cost=float(cost) if isinstance(cost, (int, float)) else None,
                    )


class LLMGrader:
    """Right when the grading model, shown the question, the answer and the reference,
    scores the answer correct (openevals' `CORRECTNESS_PROMPT`, at temperature 0)."""

    name = "llm"
    votable = False

    def __init__(self, model: str, *, backend: OpenAICompatibleBackend | None = None) -> None:
        try:
            import openevals  # noqa: F401
        except ImportError:
            from langchain_fusion.eval.graders import GraderError

            raise GraderError(
                "the llm grader needs the `eval` extra: pip install 'langchain-fusion[eval]'"
            ) from None
        self.model = model
        self.backend = backend or OpenAICompatibleBackend()

    def key(self, answer: str) -> str | None:
        return None

    async def grade(self, item: EvalItem, answer: str) -> Grade:
        from openevals.llm import create_async_llm_as_judge
        from openevals.prompts import CORRECTNESS_PROMPT

        collector = _UsageCollector()
        judge = self.backend.chat_model(self.model).model_copy(
            update={"callbacks": [collector], "temperature": 0.0}
        )
        evaluator = create_async_llm_as_judge(
            prompt=CORRECTNESS_PROMPT,
            feedback_key="correctness",
            judge=judge,
            structured_output_kwargs={"method": "json_schema"},
        )
        try:
            result: Any = await evaluator(
                inputs={"question": item.question},
                outputs={"answer": answer},
                reference_outputs={"answer": item.reference},
            )
        except Exception as error:
            return Grade(False, f"grader failed: {type(error).__name__}: {error}", collector.usage)
        score = result.get("score") if isinstance(result, dict) else None
        comment = str(result.get("comment") or "") if isinstance(result, dict) else ""
        return Grade(score is True or score == 1, comment[:500], collector.usage)
