"""ChatFusion's answer in LangChain's standard content blocks: the deliberation as a
`server_tool_call` and its `server_tool_result`, like any provider's server-side tool.

The message keeps its text `content` (and `response_metadata["fusion_result"]`); the blocks
are what `message.content_blocks` derives from it, through the translator registered here
for ChatFusion's `model_provider` (langchain-core's extension point for integrations), and
what `output_version="v1"` puts in `content`.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages import content as types
from langchain_core.messages.block_translators import register_translator

from langchain_fusion.graph.prompts import FUSION_TOOL_NAME

CONTENT_PROVIDER = "langchain_fusion"
"""`response_metadata["model_provider"]` of ChatFusion's messages."""
SERVER_TOOL_TYPE = "openrouter:fusion"


def deliberation_blocks(metadata: dict[str, Any]) -> list[types.ContentBlock]:
    """The deliberation a message's metadata records, as a call and its result."""
    call = metadata.get("fusion_call")
    result = metadata.get("fusion_result")
    if not isinstance(call, dict) or not isinstance(result, dict):
        return []
    call_id = str(call.get("id") or "call_fusion")
    return [
        types.ServerToolCall(
            type="server_tool_call",
            id=call_id,
            name=FUSION_TOOL_NAME,
            args=dict(call.get("args") or {}),
            extras={"server_tool": SERVER_TOOL_TYPE},
        ),
        types.ServerToolResult(
            type="server_tool_result",
            tool_call_id=call_id,
            status="success" if result.get("status") == "ok" else "error",
            output=result,
            extras={"server_tool": SERVER_TOOL_TYPE},
        ),
    ]


def _translate(message: AIMessage | AIMessageChunk) -> list[types.ContentBlock]:
    # The rest (text, tool calls) as langchain-core parses any message: the same message
    # without a provider takes its best-effort path.
    metadata = {k: v for k, v in message.response_metadata.items() if k != "model_provider"}
    plain = message.model_copy(update={"response_metadata": metadata})
    if any(block.get("type") == "server_tool_call" for block in plain.content_blocks):
        return plain.content_blocks  # already in v1 content
    return [*deliberation_blocks(message.response_metadata), *plain.content_blocks]


register_translator(CONTENT_PROVIDER, _translate, _translate)
