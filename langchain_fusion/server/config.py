"""The server's configuration as data: what `langchain-fusion serve` was told, in a form
that survives the trip to uvicorn's worker processes (JSON in an environment variable).

It holds no secret of its own: server keys are kept as digests, and the upstream key stays
in `OPENROUTER_API_KEY`, which the workers inherit. A PostgreSQL ledger's URL is kept as
given: leave its password to libpq (`PGPASSWORD`, `~/.pgpass`) to keep it out of here too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.applications import Starlette

from langchain_fusion.contract.parameters import FusionParameters
from langchain_fusion.limits import ModelPrice
from langchain_fusion.local import LocalModelServer
from langchain_fusion.server.app import create_app
from langchain_fusion.server.gateway import KEEPALIVE_S
from langchain_fusion.server.keys import KeyRing, ServerKey
from langchain_fusion.server.ledger import SpendLedger
from langchain_fusion.server.models import fusion_models, local_fusion_models
from langchain_fusion.server.policy import Policy

CONFIG_ENV = "LANGCHAIN_FUSION_SERVER_CONFIG"
DEFAULT_LEDGER = "langchain-fusion-spend.sqlite3"
"""Where spend is kept when a key has a cap and no `--ledger` is given (working directory)."""


class ServerConfig(BaseModel):
    """Everything `langchain-fusion serve` configures."""

    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(default_factory=dict)
    """The contract's parameters the server sets (its default panel, judge, limits)."""
    outer_model: str | None = None
    """The aliases' outer model (default: the judge)."""
    keys: list[ServerKey] = Field(default_factory=list)
    byok: bool = False
    ledger: str | None = Field(default=None, repr=False)  # a URL may hold a password
    """The spend ledger: a SQLite file's path, or a `postgresql://` URL."""
    allow_models: list[str] = Field(default_factory=list)
    max_panel: int | None = Field(default=None, ge=1)
    max_request_tokens: int | None = Field(default=None, ge=1)
    max_request_cost: float | None = Field(default=None, gt=0)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    keepalive_s: float = Field(default=KEEPALIVE_S, gt=0)
    extensions: bool = True
    """Accept our extensions of the contract (`parameters.cascade`); False: 400."""
    playground: bool = True
    """Serve the browser playground at `/`."""

    @model_validator(mode="after")
    def _costs_need_prices(self) -> ServerConfig:
        # The worst case in USD is priced before the run; with no price it cannot be
        # bounded, and every request would be refused.
        if not self.prices:
            if self.max_request_cost is not None:
                raise ValueError("--max-request-cost needs a price for each model (--prices)")
            if any(key.max_usd is not None for key in self.keys):
                raise ValueError("a key with max_usd needs a price for each model (--prices)")
        return self

    def ledger_target(self) -> str | Path | None:
        """The spend ledger: the database URL or the file given, or the default file when
        the server has keys."""
        if self.ledger:
            return self.ledger if "://" in self.ledger else Path(self.ledger).resolve()
        if self.keys:  # every key's spend is kept (`/v1/key`), capped or not
            return Path(DEFAULT_LEDGER).resolve()
        return None

    def build(self, *, local: LocalModelServer | None = None) -> Starlette:
        """The app (raises `ValueError` on an invalid configuration, `LedgerError` when the
        ledger's database cannot be opened)."""
        settings: dict[str, Any] = {}
        if self.parameters:
            settings["parameters"] = FusionParameters.model_validate(self.parameters)
        if self.outer_model:
            settings["outer_model"] = self.outer_model
        models = (
            local_fusion_models(local, **settings)
            if local is not None
            else fusion_models(**settings)
        )
        target = self.ledger_target()
        return create_app(
            models,
            keys=KeyRing(self.keys, byok=self.byok),
            policy=Policy(
                allow_models=tuple(self.allow_models),
                max_panel=self.max_panel,
                max_request_tokens=self.max_request_tokens,
                max_request_cost=self.max_request_cost,
                prices=dict(self.prices),
                extensions=self.extensions,
            ),
            ledger=SpendLedger(target) if target is not None else None,
            keepalive_s=self.keepalive_s,
            playground=self.playground,
        )

    def export(self) -> None:
        """Put this configuration where `app_from_environment` finds it."""
        os.environ[CONFIG_ENV] = self.model_dump_json()


def app_from_environment() -> Starlette:
    """The app a uvicorn worker serves (`--workers N`): built from `CONFIG_ENV`."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{CONFIG_ENV} is not set: start workers with langchain-fusion serve")
    return ServerConfig.model_validate_json(raw).build()
