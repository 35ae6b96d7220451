"""`POST /v1/responses`: OpenAI's Responses API, with fusion as on the hosted service.

With fusion (alias, `openrouter:fusion` tool or plugin) the request runs through a
`ChatFusion`; without, through the model itself on the backend (translated to Chat
Completions, which every OpenAI-compatible backend speaks). The output holds one
`openrouter:fusion` item per fusion call, the assistant `message`, and a `function_call`
item per call of the caller's tools; `usage` sums every inner call. Streaming sends the
standard events, and the `response.fusion_call.*` events while the panel works.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from langchain_fusion.graph.budget import BudgetEstimate, approximate_tokens
from langchain_fusion.graph.prompts import FUSION_TOOL_NAME
from langchain_fusion.server.errors import GatewayError, from_validation
from langchain_fusion.server.gateway import (
    SSE_HEADERS,
    Gateway,
    KeepAlive,
    with_keepalive,
)
from langchain_fusion.server.keys import Principal
from langchain_fusion.server.ledger import Reservation, Spend
from langchain_fusion.server.meter import FusionCall, RunRecorder, Usage, message_spend
from langchain_fusion.server.policy import ASSUMED_OUTPUT_TOKENS, plain_prompt_tokens
from langchain_fusion.server.rehydrate import fusion_item, item_id, pending_item
from langchain_fusion.server.responses_events import (
    ResponseWriter,
    finish,
    function_call_items,
    message_item,
    new_response,
)
from langchain_fusion.server.responses_request import ResponsesCall, ResponsesRequest, prepare
from langchain_fusion.server.routing import find_fusion, label, resolve

logger = logging.getLogger("langchain_fusion.server")


@dataclass
class _Run:
    """One admitted Responses request: what to run, with what, and what it holds."""

    runnable: Runnable[LanguageModelInput, BaseMessage]
    call: ResponsesCall
    kwargs: dict[str, Any]
    recorder: RunRecorder
    reservation: Reservation | None
    plain_model: str | None
    """The model of a request without fusion (its spend is its own usage)."""
    principal: Principal

    @property
    def config(self) -> RunnableConfig:
        return {"callbacks": [self.recorder]}

    def spend(self, final: BaseMessage | None) -> Spend:
        if self.plain_model is None:
            return self.recorder.spend()
        if final is None:  # cancelled or failed mid-way: the reservation is charged in full
            return Spend(0, 0.0, complete=False)
        return message_spend(final, self.plain_model, self.recorder.prices)


async def responses(gateway: Gateway, request: Request) -> Response:
    """Validate, check the policy, hold the worst case, then answer or stream."""
    principal = gateway.authenticate(request)
    body = await gateway.read_json(request)
    try:
        parsed = ResponsesRequest.model_validate(body)
    except ValidationError as error:
        raise from_validation(error) from None
    ask = find_fusion(parsed.model, parsed.tools, parsed.plugins)
    call = prepare(parsed, fusion_enabled=ask.enabled if ask is not None else True)
    outer_label = parsed.model
    worst: BudgetEstimate
    runnable: Runnable[LanguageModelInput, BaseMessage]
    kwargs = {k: v for k, v in call.kwargs.items() if k not in ("tools", "tool_choice")}
    if ask is None:
        gateway.policy.check_models([parsed.model])
        limit = call.kwargs.get("max_tokens") or ASSUMED_OUTPUT_TOKENS
        prompt = approximate_tokens(call.messages) + plain_prompt_tokens({"tools": call.tools})
        worst = gateway.policy.call_worst_case(parsed.model, prompt, limit)
        gateway.policy.check_budget(worst)
        runnable = _bound(
            gateway.catalog.plain_model(parsed.model, principal.upstream_key), call.kwargs
        )
    else:
        deliberation = resolve(ask, gateway.catalog.alias_defaults(ask.alias))
        gateway.policy.check_deliberation(deliberation)
        worst = gateway.policy.fusion_worst_case(
            deliberation,
            call.messages,
            tools=call.tools,
            outer_max_tokens=call.kwargs.get("max_tokens") or deliberation.defaults.max_tokens,
            enabled=call.enabled,
        )
        gateway.policy.check_budget(worst)
        runnable = gateway.catalog.chat_for(deliberation, principal.upstream_key)
        kwargs = dict(call.kwargs)
        if not call.enabled:
            kwargs["fusion_enabled"] = False
        outer_label = label(deliberation.outer)
    reservation = await gateway.reserve(principal, worst)
    run = _Run(
        runnable=runnable,
        call=call,
        kwargs=kwargs,
        recorder=RunRecorder(gateway.policy.prices),
        reservation=reservation,
        plain_model=parsed.model if ask is None else None,
        principal=principal,
    )
    response = new_response(parsed.model_dump(), outer_label)
    if call.stream:
        return StreamingResponse(
            _stream(gateway, run, ResponseWriter(response)),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    final = await gateway.answer(
        request,
        run.runnable.ainvoke(call.messages, run.config, **run.kwargs),
        principal=principal,
        reservation=reservation,
        spend=run.spend,
        what="responses",
    )
    response["output"] = _output(run, final)
    finish(response, final, _usage(run, final).responses())
    logger.info("responses key=%s model=%s status=200", principal.name, response["model"])
    return JSONResponse(response)


def _bound(
    model: BaseChatModel, kwargs: dict[str, Any]
) -> Runnable[LanguageModelInput, BaseMessage]:
    tools = kwargs.get("tools")
    if not tools:
        return model
    choice = kwargs.get("tool_choice")
    if choice is None:
        return model.bind_tools(tools)
    return model.bind_tools(tools, tool_choice=choice)


def _usage(run: _Run, final: BaseMessage | None) -> Usage:
    return Usage.of(final, run.spend(final).usd)


def _output(run: _Run, final: BaseMessage) -> list[dict[str, Any]]:
    """Fusion items (each call, in order), the message, the caller's function calls."""
    output = [fusion_item(call) for call in run.recorder.fusion_calls()]
    if final.text:
        output.append(message_item(final.text))
    return output + function_call_items(final)


async def _stream(gateway: Gateway, run: _Run, writer: ResponseWriter) -> AsyncIterator[bytes]:
    """The Responses event stream of one run."""
    for chunk in writer.start():
        yield chunk
    final: BaseMessage | None = None
    recorder = run.recorder
    try:
        source = run.runnable.astream_events(
            run.call.messages, run.config, version="v2", **run.kwargs
        )
        async for event in with_keepalive(source, gateway.keepalive_s):
            if isinstance(event, KeepAlive):
                yield b": keepalive\n\n"
                continue
            kind, root = event["event"], not event["parent_ids"]
            if kind == "on_chat_model_stream" and root:
                if text := event["data"]["chunk"].text:
                    for chunk in writer.text(text):
                        yield chunk
            elif kind == "on_chat_model_end" and root:
                final = event["data"]["output"]
            elif kind in ("on_tool_start", "on_tool_end") and event["name"] == FUSION_TOOL_NAME:
                for chunk in _fusion_run(writer, recorder, event):
                    yield chunk
            elif kind == "on_custom_event":
                for chunk in writer.fusion_progress(event["run_id"], event["name"], event["data"]):
                    yield chunk
    except Exception as error:
        failure = (
            error
            if isinstance(error, GatewayError)
            else gateway.failure(error, run.principal, "responses stream")
        )
        for chunk in writer.failed(failure):
            yield chunk
        return
    finally:
        await gateway.settle(run.reservation, run.spend(final))
    for chunk in [*writer.close_text(), *writer.close_fusion()]:
        yield chunk
    for call in recorder.fusion_calls():
        if not call.ran:  # capped: one fusion per turn
            for chunk in writer.fusion_item(fusion_item(call)):
                yield chunk
    if final is not None:
        for item in function_call_items(final):
            for chunk in writer.function_call(item):
                yield chunk
    finish(writer.response, final, _usage(run, final).responses())
    yield writer.completed()


def _fusion_run(writer: ResponseWriter, recorder: RunRecorder, event: Any) -> list[bytes]:
    """Open the fusion item when the tool starts; close it with the result when it ends."""
    run = event["run_id"]
    call = recorder.call_of_run(run)
    call_id = call.call_id if call is not None else f"call_fusion_{run}"
    if event["event"] == "on_tool_start":
        return writer.fusion_started(run, pending_item(call_id))
    output = event["data"].get("output")
    result = getattr(output, "artifact", None)
    finished = FusionCall(
        call_id=call_id,
        prompt="",
        result=result,
        ran=True,
        error=None if result is not None else str(getattr(output, "content", output)),
    )
    item = fusion_item(finished)
    item["id"] = item_id(call_id)
    return writer.fusion_finished(run, item)
