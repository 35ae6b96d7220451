"""One `ChatFusion` request: the outer model's tool loop, written once as a plan.

The outer model gets the fusion tool next to the caller's tools. When it calls fusion, the
deliberation runs (once a turn: a second fusion call gets `fusion_invocation_capped`) and
the outer model is called again with the result. When it calls the caller's tools, those
calls are returned, as from any chat model; if it called fusion in the same request (in the
same message or before), the fusion calls and their results ride along in the returned
message's `additional_kwargs["fusion"]`, and are put back in place when the caller sends
the conversation back with its tool results: the outer model then sees a transcript in
which every call has its answer, and the deliberation does not run again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolCall,
    ToolMessage,
    messages_from_dict,
    messages_to_dict,
)
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.messages.tool import tool_call
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import Runnable, RunnableConfig

from langchain_fusion.backends import model_label
from langchain_fusion.chat_models.content_blocks import CONTENT_PROVIDER
from langchain_fusion.chat_models.loop_stop import LoopProgress, holds
from langchain_fusion.contract.result import FusionResult, TokenUsage
from langchain_fusion.graph.prompts import (
    FUSION_TOOL_NAME,
    format_tool_content,
    is_instruction_message,
)
from langchain_fusion.graph.steps import Call, Plan
from langchain_fusion.tools.fusion import FusionTool

CARRY = "fusion"
"""The `additional_kwargs` key under which a returned message carries its fusion calls."""
MAX_OUTER_CALLS = 4
"""Outer calls per request: decide, (deliberate), answer; a margin for parallel calls."""

ToolChoice = str | dict[str, Any] | bool


@dataclass
class OuterTurn:
    """One request's tool loop: the transcript so far and what has been spent."""

    conversation: list[BaseMessage]
    """The caller's messages, with earlier fusion calls put back in place."""
    user_tools: list[dict[str, Any]]
    choice: ToolChoice | None
    call_kwargs: dict[str, Any]
    router: str
    stream_outer: bool
    deliberated: bool = False
    """Fusion has run in this turn (in this request, or in the one being continued), or is
    off for this request: it is not offered to the outer model."""
    transcript: list[BaseMessage] = field(default_factory=list)
    results: list[FusionResult] = field(default_factory=list)
    result_calls: list[ToolCall] = field(default_factory=list)
    """The fusion call of each of `results` (its id and prompt)."""
    usage: UsageMetadata | None = None
    last: BaseMessage | None = None
    texts: list[str] = field(default_factory=list)
    """The outer model's text, when it was not streamed chunk by chunk."""
    added: int = 0
    """Where this request's own messages start in the transcript."""
    stop_when: list[Mapping[str, Any]] = field(default_factory=list)  # see loop_stop.py
    progress: LoopProgress = field(default_factory=LoopProgress)
    stopped: bool = False
    """A stop condition held: the calls pending run, then one last outer call with tool
    calls disabled."""

    @classmethod
    def start(
        cls,
        messages: Sequence[BaseMessage],
        *,
        user_tools: list[dict[str, Any]],
        choice: ToolChoice | None,
        call_kwargs: dict[str, Any],
        router: str,
        stream_outer: bool,
        fusion_enabled: bool = True,
        stop_when: Sequence[Mapping[str, Any]] = (),
    ) -> OuterTurn:
        conversation = restore_fusion_calls(messages)
        return cls(
            stop_when=list(stop_when),
            conversation=conversation,
            user_tools=user_tools,
            choice=choice,
            call_kwargs=call_kwargs,
            router=router,
            stream_outer=stream_outer,
            deliberated=not fusion_enabled or continues_a_deliberation(messages),
            transcript=list(conversation),
            added=len(conversation),
        )

    # --- the plan -----------------------------------------------------------------------

    def plan(self, outer: BaseChatModel, fusion: FusionTool, child: RunnableConfig) -> Plan[None]:
        """Deliberate when forced; call the outer model until it answers or hands back the
        caller's tool calls."""
        self._check_stop()  # `step_count_is: 0`: no server-tool step at all
        if self.force_fusion and not self.deliberated and not self.stopped:
            call = self._fusion_call(self.prompt(), f"call_fusion_{len(self.conversation)}")
            # Show the outer model the call it did not need to make.
            self.transcript.append(AIMessage("", tool_calls=[_without_history(call)]))
            self._answer(call, (yield Call(fusion, call, config=child)))
            self.progress.record(None, [FUSION_TOOL_NAME], "tool_calls")
            self._check_stop()
        for _ in range(MAX_OUTER_CALLS):
            message = yield Call(
                self.outer_runnable(outer, fusion),
                self.transcript,
                stream=self.stream_outer,
                config=child,
                kwargs=self.call_kwargs,
            )
            fusion_calls = self._record(message)
            if not fusion_calls:
                return
            for call in fusion_calls:
                if self.deliberated:
                    self.transcript.append(_capped(call))
                else:
                    self._answer(call, (yield Call(fusion, call, config=child)))
            self._check_stop()  # the deliberation's own tokens and cost count too
            if _user_calls(message):
                return  # the caller runs its own tools; the fusion calls ride along

    def outer_runnable(
        self, outer: BaseChatModel, fusion: FusionTool
    ) -> Runnable[LanguageModelInput, BaseMessage]:
        """The outer model with this step's tools: fusion until it has run, then yours."""
        tools: list[Any] = list(self.user_tools)
        choice = self.choice
        if self.stopped:  # the loop's last call: tool calls disabled, the answer is text
            if not tools:
                return outer.with_config(run_name="outer")
            bound = outer.bind_tools(tools, tool_choice="none")
            return bound.with_config(run_name="outer")
        if not self.deliberated:
            tools = [fusion, *tools]
        elif _named(choice) == FUSION_TOOL_NAME or (choice == "required" and not self.user_tools):
            choice = None  # fusion ran: the requirement is met
        if not tools:
            return outer.with_config(run_name="outer")
        if choice is None:
            return outer.bind_tools(tools).with_config(run_name="outer")
        # Chat model classes accept a dict or "required" here, whatever the base signature.
        bound = outer.bind_tools(tools, tool_choice=choice)  # type: ignore[arg-type]
        return bound.with_config(run_name="outer")

    @property
    def force_fusion(self) -> bool:
        """Deliberation is certain: fusion named, or a tool required and fusion the only one."""
        if _named(self.choice) == FUSION_TOOL_NAME:
            return True
        return self.choice == "required" and not self.user_tools

    def prompt(self) -> str:
        """What a forced deliberation answers: the user's last turn (else the last
        message with text that is not an instruction)."""
        for message in reversed(self.conversation):
            if isinstance(message, HumanMessage) and message.text.strip():
                return message.text
        for message in reversed(self.conversation):
            if not is_instruction_message(message) and message.text.strip():
                return message.text
        return ""

    # --- bookkeeping ----------------------------------------------------------------------

    def _record(self, message: Any) -> list[ToolCall]:
        """Count an outer call; return its fusion calls (with the conversation), which
        join the transcript with the whole message."""
        if not isinstance(message, BaseMessage):
            return []
        self.usage = add_usage(self.usage, getattr(message, "usage_metadata", None))
        self.last = message
        if not self.stream_outer and message.text:
            self.texts.append(message.text)
        calls = getattr(message, "tool_calls", None) or []
        metadata = message.response_metadata
        self.progress.record(
            metadata.get("cost"), [c["name"] for c in calls], metadata.get("finish_reason")
        )
        self._check_stop()
        fusion_calls = [call for call in calls if call["name"] == FUSION_TOOL_NAME]
        if not fusion_calls:
            return []
        # The provider's extra fields (reasoning, signatures) go back to it as they came.
        self.transcript.append(
            AIMessage(
                content=message.content,
                tool_calls=calls,
                additional_kwargs=message.additional_kwargs,
            )
        )
        return [
            self._fusion_call(call["args"].get("prompt", ""), call["id"])
            for call in calls
            if call["name"] == FUSION_TOOL_NAME
        ]

    def _check_stop(self) -> None:
        self.progress.tokens = self.usage["total_tokens"] if self.usage else 0
        if self.stop_when and not self.stopped and holds(self.stop_when, self.progress):
            self.stopped = True

    def _fusion_call(self, prompt: Any, call_id: str | None) -> ToolCall:
        # The whole conversation: the tool leaves out the tool plumbing itself, and counts
        # its own earlier results for `max_invocations`.
        return ToolCall(
            name=FUSION_TOOL_NAME,
            args={"prompt": str(prompt), "messages": list(self.conversation)},
            id=call_id,
            type="tool_call",
        )

    def _answer(self, call: ToolCall, tool_message: Any) -> None:
        """Add the fusion tool's answer to the transcript; count the deliberation."""
        assert isinstance(tool_message, ToolMessage)
        self.transcript.append(
            ToolMessage(tool_message.content, tool_call_id=call["id"] or "", name=FUSION_TOOL_NAME)
        )
        self.deliberated = True
        result = tool_message.artifact
        if isinstance(result, FusionResult):
            self.results.append(result)
            self.result_calls.append(_without_history(call))
            self.usage = add_usage(self.usage, _as_usage_metadata(result.usage.total))
            self.progress.cost += result.usage.total.cost or 0.0

    # --- the answer -----------------------------------------------------------------------

    def final_chunk(self, outer: BaseChatModel) -> ChatGenerationChunk:
        """The closing chunk: your tool calls (with the fusion calls that ride along), the
        text not streamed yet, the summed usage, and the metadata."""
        last = self.last
        user_calls = _user_calls(last)
        finish_reason = "tool_calls" if user_calls else "stop"
        if last is not None and not user_calls:
            finish_reason = last.response_metadata.get("finish_reason", "stop")
        metadata: dict[str, Any] = {
            "model_name": (last.response_metadata.get("model_name") if last else None)
            or model_label(outer),
            "model_provider": CONTENT_PROVIDER,
            "router": self.router,
            "finish_reason": finish_reason,
        }
        completed = [
            (call, r)
            for call, r in zip(self.result_calls, self.results, strict=True)
            if r.responses or r.failure_reason
        ]
        if completed:
            call, result = completed[-1]
            metadata["fusion_result"] = result.model_dump(mode="json")
            # `content_blocks` shows it as a server tool call (chat_models/content_blocks.py).
            metadata["fusion_call"] = {"id": call["id"], "args": call["args"]}
        additional: dict[str, Any] = {}
        if user_calls and len(self.transcript) > self.added:
            additional[CARRY] = self._carry(last)
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="".join(self.texts),
                additional_kwargs=additional,
                tool_call_chunks=[
                    {
                        "name": call["name"],
                        "args": json.dumps(call["args"]),
                        "id": call["id"],
                        "index": index,
                        "type": "tool_call_chunk",
                    }
                    for index, call in enumerate(user_calls)
                ],
                usage_metadata=self.usage,
                response_metadata=metadata,
                chunk_position="last",
            ),
            generation_info={"finish_reason": finish_reason},
        )

    def _carry(self, last: Any) -> dict[str, Any]:
        """What the caller's next request needs to put this request's fusion calls back:
        the messages before the returned one, its fusion calls, and their answers."""
        own = self.transcript[self.added :]
        calls = getattr(last, "tool_calls", None) or []
        in_last = [call["id"] for call in calls if call["name"] == FUSION_TOOL_NAME]
        if in_last:  # the returned message is the last AI message of the transcript
            split = max(i for i, m in enumerate(own) if isinstance(m, AIMessage))
            before, answers = own[:split], own[split + 1 :]
        else:
            before, answers = own, []
        return {
            "before": messages_to_dict(before),
            "tool_calls": [dict(call) for call in calls],
            "answers": messages_to_dict(answers),
        }


def restore_fusion_calls(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The conversation with every carried fusion call put back where it was made."""
    restored: list[BaseMessage] = []
    for message in messages:
        carry = message.additional_kwargs.get(CARRY)
        if not isinstance(message, AIMessage) or not isinstance(carry, dict):
            restored.append(message)
            continue
        restored += messages_from_dict(carry.get("before") or [])
        calls = [
            tool_call(name=call["name"], args=call["args"], id=call["id"])
            for call in carry.get("tool_calls") or []
        ]
        kwargs = {k: v for k, v in message.additional_kwargs.items() if k != CARRY}
        restored.append(
            message.model_copy(
                update={"tool_calls": calls or message.tool_calls, "additional_kwargs": kwargs}
            )
        )
        restored += messages_from_dict(carry.get("answers") or [])
    return restored


def continues_a_deliberation(messages: Sequence[BaseMessage]) -> bool:
    """Whether this request answers the tool calls of a message that carried fusion calls:
    the same turn, in which fusion has already run."""
    for message in reversed(messages):
        if isinstance(message, ToolMessage):
            continue
        return isinstance(message, AIMessage) and CARRY in message.additional_kwargs
    return False


def _user_calls(message: Any) -> list[ToolCall]:
    calls = getattr(message, "tool_calls", None) or []
    return [call for call in calls if call["name"] != FUSION_TOOL_NAME]


def _without_history(call: ToolCall) -> ToolCall:
    return ToolCall(
        name=call["name"], args={"prompt": call["args"]["prompt"]}, id=call["id"], type="tool_call"
    )


def _capped(call: ToolCall) -> ToolMessage:
    """One fusion per turn, as on the hosted service."""
    capped = FusionResult(
        status="error",
        failure_reason="fusion_invocation_capped",
        failure_detail="one fusion per turn: fusion has already run in this turn",
    )
    return ToolMessage(
        format_tool_content(capped), tool_call_id=call["id"] or "", name=FUSION_TOOL_NAME
    )


def _named(choice: ToolChoice | None) -> str | None:
    if isinstance(choice, dict):
        function = choice.get("function") or {}
        name = function.get("name") if isinstance(function, dict) else None
        return name if isinstance(name, str) else choice.get("name")
    return None


def normalise_choice(choice: ToolChoice | None) -> ToolChoice | None:
    """One spelling per meaning: "required" for any/True, a dict for a named tool, None
    for the model's own choice (auto, False)."""
    if choice is True or choice in ("any", "required"):
        return "required"
    if choice in (False, None, "auto"):
        return None
    if isinstance(choice, str) and choice != "none":
        return {"type": "function", "function": {"name": choice}}
    return choice


def _as_usage_metadata(usage: TokenUsage) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
    )
