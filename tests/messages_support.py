"""What the `/v1/messages` tests share: Anthropic's SDK clients pointed at the gateway, and
a tool in Anthropic's shape."""

from __future__ import annotations

import anthropic
from test_server_support import Gateway

WEATHER = {
    "name": "get_weather",
    "description": "Get the weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def anthropic_client(gateway: Gateway) -> anthropic.Anthropic:
    """Anthropic's sync client on the gateway (the SDK adds `/v1/messages` itself)."""
    return anthropic.Anthropic(
        base_url=gateway.url.removesuffix("/v1"), api_key="sk-client", max_retries=0
    )


def async_anthropic_client(gateway: Gateway) -> anthropic.AsyncAnthropic:
    """Anthropic's async client on the gateway."""
    return anthropic.AsyncAnthropic(
        base_url=gateway.url.removesuffix("/v1"), api_key="sk-client", max_retries=0
    )
