"""Who may call the server: its keys, each with an optional spend cap, and the caller's own
upstream key when the server runs bring-your-own-key.

Keys are kept as SHA-256 digests only (a keys file may hold digests instead of keys), and
a presented key is compared with every digest in constant time (`hmac.compare_digest`,
each one, no early exit), so neither the file nor the timing tells an attacker anything.
No key ever reaches a log line, an error or a response: only its `name`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from langchain_fusion.server.errors import GatewayError

KEYS_ENV = "FUSION_SERVER_API_KEYS"
"""Several keys in the environment: `name:key,name:key` (or bare keys)."""
UPSTREAM_KEY_HEADER = "x-upstream-api-key"
"""Bring-your-own-key with server keys: the caller's upstream key travels here (without
server keys, in `Authorization` itself, as an OpenRouter client sends it)."""


def digest(key: str) -> str:
    """The SHA-256 hex digest a key is stored and compared as."""
    return hashlib.sha256(key.encode()).hexdigest()


class ServerKey(BaseModel):
    """One key: its name (what logs and the ledger show), its digest, its caps.

    In a keys file, give `key` (hashed when loaded) or `sha256` (the digest, so that the
    file holds no secret). Caps are over the key's whole life, kept in the spend ledger.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@:-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    max_tokens: int | None = Field(default=None, gt=0)
    """Tokens (in and out, every inner call) this key may spend."""
    max_usd: float | None = Field(default=None, gt=0)
    """USD this key may spend: needs a price for every model (`--prices`) or a backend
    that reports cost."""

    @model_validator(mode="before")
    @classmethod
    def _hash_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "key" in data:
            data = dict(data)
            key = data.pop("key")
            if not isinstance(key, str) or len(key) < 8:
                raise ValueError("'key' must be a string of at least 8 characters")
            if "sha256" in data:
                raise ValueError("give either 'key' or 'sha256', not both")
            data["sha256"] = digest(key)
        return data

    @property
    def capped(self) -> bool:
        return self.max_tokens is not None or self.max_usd is not None

    def __repr__(self) -> str:  # the digest is no secret, but there is no need to show it
        return (
            f"ServerKey(name={self.name!r}, max_tokens={self.max_tokens}, max_usd={self.max_usd})"
        )


def key_from_secret(name: str, key: str, **caps: Any) -> ServerKey:
    """A `ServerKey` for a key given in clear (from the command line or the environment)."""
    return ServerKey.model_validate({"name": name, "key": key, **caps})


def load_keys_file(path: str | Path) -> list[ServerKey]:
    """Keys from a JSON file: `{"keys": [{"name", "key" | "sha256", "max_tokens"?, "max_usd"?}]}`
    (or the list itself). Raises `ValueError` naming the entry."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the keys file {path}: {error}") from None
    entries = data.get("keys") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError(f'{path}: expected a list of keys, or {{"keys": [...]}}')
    keys = []
    for index, entry in enumerate(entries):
        try:
            keys.append(ServerKey.model_validate(entry))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}"
                for e in error.errors(include_url=False)
            )
            raise ValueError(f"{path}: keys[{index}]: {problems}") from None
    return keys


def keys_from_environment(environ: Mapping[str, str] | None = None) -> list[ServerKey]:
    """Keys from `FUSION_SERVER_API_KEYS`: `name:key` items (or bare keys), comma-separated."""
    raw = (environ if environ is not None else os.environ).get(KEYS_ENV, "")
    keys = []
    for index, item in enumerate(part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, sep, key = item.partition(":")
        if not sep:
            name, key = f"env-{index}", item
        keys.append(key_from_secret(name, key))
    return keys


@dataclass(frozen=True)
class Principal:
    """The caller of one request: the server key it presented, and its upstream key."""

    key: ServerKey | None
    upstream_key: SecretStr | None = None

    @property
    def name(self) -> str:
        return self.key.name if self.key is not None else "anonymous"


class KeyRing:
    """The server's keys and how a request proves it holds one."""

    def __init__(self, keys: Iterable[ServerKey] = (), *, byok: bool = False) -> None:
        self.keys: tuple[ServerKey, ...] = tuple(keys)
        names = [key.name for key in self.keys]
        if len(set(names)) != len(names):
            raise ValueError("server key names must be unique")
        if len({key.sha256 for key in self.keys}) != len(self.keys):
            raise ValueError("the same server key is listed twice")
        self.byok = byok

    @property
    def required(self) -> bool:
        """Whether requests must present one of the keys."""
        return bool(self.keys)

    def match(self, presented: str) -> ServerKey | None:
        """The key whose digest matches, compared with every key in constant time."""
        given = digest(presented).encode()
        found: ServerKey | None = None
        for key in self.keys:  # no early exit: the time does not depend on which matched
            if hmac.compare_digest(given, key.sha256.encode()):
                found = key
        return found

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller, or a 401 that names no key."""
        token = _bearer(headers.get("authorization", ""))
        key: ServerKey | None = None
        if self.required:
            key = self.match(token) if token else None
            if key is None:
                raise GatewayError(401, "Missing or invalid API key for this server.")
        upstream: SecretStr | None = None
        if self.byok:
            given = _bearer(headers.get(UPSTREAM_KEY_HEADER, "")) or headers.get(
                UPSTREAM_KEY_HEADER, ""
            )
            upstream_text = given if self.required else token
            if not upstream_text:
                where = f"the {UPSTREAM_KEY_HEADER} header" if self.required else "Authorization"
                raise GatewayError(
                    401, f"This server uses your own upstream API key: send it in {where}."
                )
            if not upstream_text.isascii() or not upstream_text.strip().isprintable():
                # An HTTP header carries ASCII only: such a key could never be sent on.
                raise GatewayError(
                    400, "The upstream API key must be printable ASCII (check it for typos)."
                )
            upstream = SecretStr(upstream_text.strip())
        return Principal(key=key, upstream_key=upstream)


def _bearer(value: str) -> str:
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def secrets_of(principal: Principal) -> Sequence[str]:
    """The secrets one request carries, for redaction."""
    return [principal.upstream_key.get_secret_value()] if principal.upstream_key else []


def request_secrets(ring: KeyRing, headers: Mapping[str, str]) -> list[str]:
    """The secrets a request's headers carry: the key it presents to a server that checks
    keys, and its own upstream key under bring-your-own-key (anything else a caller puts
    in `Authorization` means nothing to this server, and is no secret of it)."""
    if not ring.required and not ring.byok:
        return []
    values = [_bearer(headers.get("authorization", ""))]
    given = headers.get(UPSTREAM_KEY_HEADER, "")
    values += [_bearer(given) or given.strip()]
    return [value for value in values if value]
