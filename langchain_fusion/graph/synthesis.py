"""The synthesis: the outer model writes the final answer from the analysis and the answers.

Only in the standalone form (`synthesize=True`), only from a usable result, and only while
the budget lasts and the deadline has not passed; one plan for `invoke` and `ainvoke`.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import get_runtime

from langchain_fusion.contract.errors import describe_error, is_programming_error
from langchain_fusion.graph.context import FusionContext
from langchain_fusion.graph.prompts import missing_analysis_reason, synthesis_request
from langchain_fusion.graph.research import reported_model, usage_of
from langchain_fusion.graph.state import FusionState
from langchain_fusion.graph.steps import Call, Plan, afinish, finish

SYNTHESIS = "synthesis"


def synthesis(state: FusionState, config: RunnableConfig) -> dict[str, Any]:
    """Write the final answer (standalone use).

    Reads `messages` (system messages included: the outer model serves the user) and
    `result`. Writes `answer`, an AI message, and the synthesis usage into `result`; on
    failure `synthesis_error`, keeping the result intact.
    """
    return finish(_plan(state), config)


async def asynthesis(state: FusionState, config: RunnableConfig) -> dict[str, Any]:
    """Async `synthesis`: the same plan."""
    return await afinish(_plan(state), config)


def _plan(state: FusionState) -> Plan[dict[str, Any]]:
    context = get_runtime(FusionContext).context
    setup, clock = context.setup, context.clock
    assert setup.synthesizer is not None
    assert state.result is not None
    # No new call once the budget is spent or the deadline has passed.
    if reason := clock.budget_spent():
        return {"synthesis_error": reason}
    if clock.past_deadline():
        deadline = setup.limits.deadline
        return {"synthesis_error": f"the deliberation deadline of {deadline:g} s passed"}
    request = synthesis_request(
        state.result.analysis,
        state.result.responses,
        judge_failure=missing_analysis_reason(state.result),
    )
    try:
        # `invoke` streams by itself when a streaming callback listens (LangGraph's
        # `messages` mode, `astream_events`); otherwise one response is far cheaper.
        message: BaseMessage | None = yield Call(
            setup.synthesizer, [*state.messages, HumanMessage(request)]
        )
    except Exception as error:
        if is_programming_error(error):
            raise
        return {"synthesis_error": describe_error(error)}
    answer = message.text if message is not None else ""
    if not answer.strip():
        return {"synthesis_error": "the outer model returned an empty answer"}
    usage = usage_of(message)
    name = reported_model(message) or setup.synthesizer_label or SYNTHESIS
    clock.spend(name, usage)
    result = state.result.model_copy(deep=True)
    result.usage.synthesis = usage
    result.usage.add_model(name, usage)
    return {
        "answer": answer,
        "result": result,
        "messages": [AIMessage(answer, response_metadata={"model_name": name})],
    }
