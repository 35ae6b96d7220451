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
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from langchain_fusion.graph.budget import BudgetEstimate, approximate_tokens
from langchain_fusion.graph.prompts import FUSION_TOOL_NAME
from langchain_fusion.server.errors import GatewayError, from_validation
from langchain_fusion.server.gateway import Gateway, KeepAlive, with_keepalive
from langchain_fusion.server.keys import Principal
from langchain_fusion.server.ledger import Reservation, Spend
from langchain_fusion.server.meter import FusionCall, RunRecorder, Usage, message_spend
from langchain_fusion.server.policy import ASSUMED_OUTPUT_TOKENS, plain_prompt_tokens
from langchain_fusion.server.responses_events import ResponseWriter
from langchain_fusion.server.responses_request import ResponsesCall, ResponsesRequest, prepare
from langchain_fusion.server.routing import FusionAsk, find_fusion, label, resolve
from langchain_fusion.server.stream_redaction import redacted_events
from langchain_fusion.server.wire.errors import with_availability
from langchain_fusion.server.wire.items import fusion_item, pending_item
from langchain_fusion.server.wire.metadata import with_metadata
from langchain_fusion.server.wire.names import ConcreteNames
from langchain_fusion.server.wire.responses import (
    OutputItem,
    ResponseObject,
    finish,
    function_call_items,
    message_item,
    new_response,
)
from langchain_fusion.server.wire.usage import ResponsesUsage, responses_usage

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
    names: ConcreteNames
    outer: str
    """The outer model as configured: the response names its concrete model."""
    requested: list[str]
    """Every model the request asked for (a failure's `availability` lists them)."""
    handlers: list[Any]
    """A fusion run's in-run spend guard (first: a call it refuses is seen by no other
    handler, so it is not counted in flight), and its LangSmith tracer (through
    redaction) when tracing is on."""

    @property
    def config(self) -> RunnableConfig:
        return {"callbacks": [*self.handlers, self.recorder, self.names]}

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

    def admitted() -> tuple[ResponsesRequest, FusionAsk | None, ResponsesCall]:
        try:
            parsed = ResponsesRequest.model_validate(body)
        except ValidationError as error:
            raise from_validation(error) from None
        ask = find_fusion(parsed.model, parsed.tools, parsed.plugins)
        return parsed, ask, prepare(parsed, fusion_enabled=ask.enabled if ask else True)

    parsed, ask, call = await gateway.off_loop(request, admitted)
    outer_label = parsed.model
    worst: BudgetEstimate
    runnable: Runnable[LanguageModelInput, BaseMessage]
    # A model without fusion has no server-tool loop to stop.
    kwargs = {
        k: v
        for k, v in call.kwargs.items()
        if k not in ("tools", "tool_choice", "stop_server_tools_when")
    }
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
    requested = [parsed.model] if ask is None else deliberation.models()
    await gateway.name_models(requested, principal)
    run = _Run(
        runnable=runnable,
        call=call,
        kwargs=kwargs,
        recorder=RunRecorder(gateway.policy.prices),
        reservation=reservation,
        plain_model=parsed.model if ask is None else None,
        principal=principal,
        names=ConcreteNames(gateway.model_names),
        outer=outer_label,
        requested=requested,
        handlers=[
            *([] if ask is None else [gateway.policy.guard(deliberation, worst)]),
            *gateway.tracing.callbacks(),
        ],
    )
    response = new_response(parsed.model_dump(), outer_label)
    metadata = with_metadata(
        {},
        request.headers,
        parsed.model,
        requested,
        fusion=ask is not None,
        byok=principal.upstream_key is not None,
    )
    response.openrouter_metadata = metadata.get("openrouter_metadata")
    if call.stream:
        return EventSourceResponse(_stream(gateway, run, response), sep="\n", ping=None)
    try:
        final = await gateway.answer(
            request,
            run.runnable.ainvoke(call.messages, run.config, **run.kwargs),
            principal=principal,
            reservation=reservation,
            spend=run.spend,
            what="responses",
        )
    except GatewayError as failure:
        raise with_availability(failure, failure.__context__, requested) from None
    response.model = run.names.concrete(outer_label) or _reported(final) or outer_label
    response.output = _output(run, final)
    finish(response, final, _usage(run, final))
    logger.info("responses key=%s model=%s status=200", principal.name, response.model)
    return JSONResponse(response.wire())


def _reported(message: BaseMessage | None) -> str | None:
    name = message.response_metadata.get("model_name") if message is not None else None
    return name if isinstance(name, str) and name else None


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


def _usage(run: _Run, final: BaseMessage | None) -> ResponsesUsage:
    recorder = None if run.plain_model is not None else run.recorder
    return responses_usage(Usage.of(final, run.spend(final).usd), recorder)


def _output(run: _Run, final: BaseMessage) -> list[OutputItem]:
    """Fusion items (each call, in order), the message, the caller's function calls."""
    output: list[OutputItem] = [fusion_item(call) for call in run.recorder.fusion_calls()]
    if final.text:
        output.append(message_item(final.text))
    return [*output, *function_call_items(final)]


async def _stream(
    gateway: Gateway, run: _Run, response: ResponseObject
) -> AsyncIterator[ServerSentEvent]:
    """The Responses event stream of one run. The outer model's name is fixed once, when
    the stream starts: its concrete name when known (an earlier request, the upstream's
    model list, or this run's first upstream chunk, which the stream waits for unless the
    deliberation runs first), else the configured one, for the whole stream."""
    writer = ResponseWriter(response, run.names)
    held: list[Any] = []
    started = False
    final: BaseMessage | None = None
    recorder = run.recorder
    try:
        source = redacted_events(  # a secret split over deltas is matched whole
            run.runnable.astream_events(run.call.messages, run.config, version="v2", **run.kwargs)
        )
        async for event in with_keepalive(source, gateway.keepalive_s):
            if isinstance(event, KeepAlive):
                yield ServerSentEvent(comment="keepalive")
                continue
            if not started:
                held.append(event)
                if run.names.concrete(run.outer) is None and not _deliberating(event):
                    continue  # the outer model's first call reports its name at its end
                # Known, or the deliberation runs first (forced): its progress is not held
                # back for a name; the stream keeps the one it starts with.
                response.model, started = run.names.name(run.outer), True
                for chunk in writer.start():
                    yield chunk
            for item in held or [event]:
                final = _final(item) or final
                for chunk in _events(writer, recorder, item):
                    yield chunk
            held = []
    except Exception as error:
        failure = (
            error
            if isinstance(error, GatewayError)
            else gateway.failure(error, run.principal, "responses stream")
        )
        with_availability(failure, error, run.requested)
        for chunk in [*_start(writer, run, started, held, final), *writer.failed(failure)]:
            yield chunk
        return
    finally:
        await gateway.settle(run.reservation, run.spend(final))
    for item in held:
        final = _final(item) or final
    for chunk in _start(writer, run, started, held, final):
        yield chunk
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
    finish(writer.response, final, _usage(run, final))
    yield writer.completed()


def _start(
    writer: ResponseWriter, run: _Run, started: bool, held: list[Any], final: BaseMessage | None
) -> list[ServerSentEvent]:
    """The stream's opening, late: the run ended before any upstream response named the
    outer model (the events it held then follow)."""
    if started:
        return []
    writer.response.model = run.names.concrete(run.outer) or _reported(final) or run.outer
    out = writer.start()
    for item in held:
        out += _events(writer, run.recorder, item)
    held.clear()
    return out


def _deliberating(event: Any) -> bool:
    kind, name = str(event["event"]), str(event["name"])
    return kind == "on_custom_event" or (kind == "on_tool_start" and name == FUSION_TOOL_NAME)


def _final(event: Any) -> BaseMessage | None:
    if event["event"] == "on_chat_model_end" and not event["parent_ids"]:
        output: BaseMessage = event["data"]["output"]
        return output
    return None


def _events(writer: ResponseWriter, recorder: RunRecorder, event: Any) -> list[ServerSentEvent]:
    """What one LangChain stream event sends."""
    kind, root = event["event"], not event["parent_ids"]
    if kind == "on_chat_model_stream" and root:
        text = event["data"]["chunk"].text
        return writer.text(text) if text else []
    if kind in ("on_tool_start", "on_tool_end") and event["name"] == FUSION_TOOL_NAME:
        return _fusion_run(writer, recorder, event)
    if kind == "on_custom_event":
        return writer.fusion_progress(event["run_id"], event["name"], event["data"])
    return []


def _fusion_run(writer: ResponseWriter, recorder: RunRecorder, event: Any) -> list[ServerSentEvent]:
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
    return writer.fusion_finished(run, fusion_item(finished))
