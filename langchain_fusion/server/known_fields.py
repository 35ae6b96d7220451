"""What the hosted request schemas know, taken from OpenRouter's published OpenAPI
document (pinned in the repository's tests; `tests/test_server_admission.py` checks that
these sets are the document's). A field, tool type or plugin the document names is known
here before this server honours it, so that no hosted request is refused as a typo.
"""

from __future__ import annotations

OPENAI_CHAT_KEYS = frozenset({"n", "max_tool_calls"})
"""Chat Completions fields the pinned hosted schema lacks but clients send: OpenAI's `n`
(the plain relay passes it on, and bills it) and the hosted contract's newer outer
`max_tool_calls` (as on the Responses API)."""

_CHAT_SCHEMA_KEYS = frozenset(
    {
        "cache_control",
        "debug",
        "frequency_penalty",
        "image_config",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "messages",
        "metadata",
        "min_p",
        "modalities",
        "model",
        "models",
        "parallel_tool_calls",
        "plugins",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_options",
        "provider",
        "reasoning",
        "reasoning_effort",
        "repetition_penalty",
        "response_format",
        "route",
        "seed",
        "service_tier",
        "session_id",
        "stop",
        "stop_server_tools_when",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_a",
        "top_k",
        "top_logprobs",
        "top_p",
        "trace",
        "user",
    }
)
"""ChatRequest.properties"""

CHAT_REQUEST_KEYS = _CHAT_SCHEMA_KEYS | OPENAI_CHAT_KEYS

RESPONSES_REQUEST_KEYS = frozenset(
    {
        "background",
        "cache_control",
        "debug",
        "frequency_penalty",
        "image_config",
        "include",
        "input",
        "instructions",
        "max_output_tokens",
        "max_tool_calls",
        "metadata",
        "modalities",
        "model",
        "models",
        "parallel_tool_calls",
        "plugins",
        "presence_penalty",
        "previous_response_id",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_options",
        "provider",
        "reasoning",
        "route",
        "safety_identifier",
        "service_tier",
        "session_id",
        "stop_server_tools_when",
        "store",
        "stream",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_k",
        "top_logprobs",
        "top_p",
        "trace",
        "truncation",
        "user",
    }
)
"""ResponsesRequest.properties"""

CHAT_TOOL_TYPES = frozenset(
    {
        "function",
        "openrouter:advisor",
        "openrouter:bash",
        "openrouter:datetime",
        "openrouter:experimental__search_models",
        "openrouter:files",
        "openrouter:fusion",
        "openrouter:image_generation",
        "openrouter:subagent",
        "openrouter:web_fetch",
        "openrouter:web_search",
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "web_search_preview_2025_03_11",
    }
)
"""The `type` of every tool ChatRequest.tools takes."""

RESPONSES_TOOL_TYPES = frozenset(
    {
        "apply_patch",
        "code_interpreter",
        "computer_use_preview",
        "custom",
        "file_search",
        "function",
        "image_generation",
        "local_shell",
        "mcp",
        "namespace",
        "openrouter:advisor",
        "openrouter:apply_patch",
        "openrouter:bash",
        "openrouter:datetime",
        "openrouter:experimental__search_models",
        "openrouter:files",
        "openrouter:fusion",
        "openrouter:image_generation",
        "openrouter:shell",
        "openrouter:subagent",
        "openrouter:tool_search",
        "openrouter:web_fetch",
        "openrouter:web_search",
        "shell",
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "web_search_preview_2025_03_11",
    }
)
"""The `type` of every tool ResponsesRequest.tools takes."""

PLUGIN_IDS = frozenset(
    {
        "auto-beta-router",
        "auto-router",
        "context-compression",
        "file-parser",
        "fusion",
        "moderation",
        "pareto-router",
        "response-healing",
        "web",
        "web-fetch",
    }
)
"""The `id` of every plugin (ChatRequest.plugins)."""

CHAT_PART_KEYS: dict[str, frozenset[str]] = {
    "file": frozenset({"file", "type"}),
    "image_url": frozenset({"image_url", "type"}),
    "input_audio": frozenset({"input_audio", "type"}),
    "input_video": frozenset({"type", "video_url"}),
    "text": frozenset({"cache_control", "prompt_cache_breakpoint", "text", "type"}),
    "video_url": frozenset({"type", "video_url"}),
}
"""The keys of each content part of a chat message, by its `type` (ChatContentItems)."""

CHAT_PART_TYPES = frozenset(CHAT_PART_KEYS)
"""The `type` of every content part of a chat message (ChatContentItems)."""

RESPONSES_INPUT_PART_KEYS: dict[str, frozenset[str]] = {
    "input_audio": frozenset({"input_audio", "type"}),
    "input_file": frozenset({"file_data", "file_id", "file_url", "filename", "type"}),
    "input_image": frozenset({"detail", "image_url", "type"}),
    "input_text": frozenset({"prompt_cache_breakpoint", "text", "type"}),
    "input_video": frozenset({"type", "video_url"}),
}
"""The keys of each content part of a Responses input message, by its `type`
(EasyInputMessage.content, InputMessageItem.content)."""

RESPONSES_OUTPUT_PART_KEYS: dict[str, frozenset[str]] = {
    "output_text": frozenset({"annotations", "logprobs", "text", "type"}),
    "refusal": frozenset({"refusal", "type"}),
}
"""The keys of each content part an assistant's output message in `input` may carry
(the output message item of Inputs: ResponseOutputText, OpenAIResponsesRefusalContent)."""
