"""An OpenAI- and OpenRouter-compatible gateway for fusion, on any backend.

Point an OpenAI or OpenRouter client at it and send what you would send to OpenRouter:
the aliases `openrouter/fusion` and `openrouter/fusion-flash`, any model with the
`openrouter:fusion` server tool (and its per-request `parameters`) or the `fusion` plugin,
on `POST /v1/chat/completions` and `POST /v1/responses`, streamed or not. A request
without fusion is a plain completion of its model on the backend. The server keeps no
conversation state; its keys, policy and spend ledger are described in `docs/server.md`.

Starlette serves the HTTP API and uvicorn runs it (`langchain-fusion serve`, `serve()`,
or `FusionServer` in a background thread for tests and notebooks).

Example::

    from langchain_fusion.server import FusionServer, create_app, fusion_models

    with FusionServer(create_app(fusion_models())) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        client.chat.completions.create(model="openrouter/fusion", messages=[...])

Modules: `app` (routes), `chat_completions`, `responses_api` (+ `responses_events`,
`responses_request`), `plain` (requests without fusion), `routing` (what a request asks
for), `catalog` (the chat models, cached), `policy`, `keys`, `ledger` (with its
stores `ledger_sqlite` and `ledger_postgres`), `meter`,
`rehydrate`, `gateway` (shared steps), `errors`, `models`, `config`, `running`.
"""

from langchain_fusion.server.app import create_app
from langchain_fusion.server.chat_request import ChatCompletionRequest
from langchain_fusion.server.config import ServerConfig, app_from_environment
from langchain_fusion.server.errors import GatewayError
from langchain_fusion.server.keys import KeyRing, ServerKey
from langchain_fusion.server.ledger import Spend, SpendLedger
from langchain_fusion.server.models import FUSION_MODELS, fusion_models, local_fusion_models
from langchain_fusion.server.policy import Policy, load_prices
from langchain_fusion.server.responses_request import ResponsesRequest
from langchain_fusion.server.running import FusionServer, is_loopback, serve, serve_workers

__all__ = [
    "FUSION_MODELS",
    "ChatCompletionRequest",
    "FusionServer",
    "GatewayError",
    "KeyRing",
    "Policy",
    "ResponsesRequest",
    "ServerConfig",
    "ServerKey",
    "Spend",
    "SpendLedger",
    "app_from_environment",
    "create_app",
    "fusion_models",
    "is_loopback",
    "load_prices",
    "local_fusion_models",
    "serve",
    "serve_workers",
]
