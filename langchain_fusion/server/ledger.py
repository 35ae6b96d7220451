"""The spend ledger: what each server key has spent, kept in a database, so that a cap
survives a restart and holds across every process that opens the same database.

Before a run, the worst case is reserved; the run starts only when spent + reserved +
worst case fits under the key's cap (else 402). After it, the reservation is replaced by
what was actually spent. Each step is one transaction holding the key's lock in the
database, so two processes, on one machine or on several, cannot both take the last of a
cap.

A reservation whose process died before settling expires after `hold_seconds` and is
charged in full when its key next reserves: the calls it covered may have been made, and a
cap must never be exceeded.

The cap logic is here, once; where the spend is kept is a `LedgerStore`'s business:
`ledger_sqlite.py` (a file: the workers of one machine; SQLite's locks need a local disk)
or `ledger_postgres.py` (a `postgresql://` URL: several machines on one database).
"""

from __future__ import annotations

import logging
import os
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from langchain_fusion.server.errors import GatewayError
from langchain_fusion.server.keys import ServerKey

logger = logging.getLogger(__name__)

DEFAULT_HOLD_S = 900.0
"""How long a reservation may stay unsettled: three times a deliberation's default deadline."""
DATABASE_SCHEMES = ("postgresql", "postgres")
"""The URL schemes of a ledger on a PostgreSQL database (anything else is a file path)."""


@dataclass(frozen=True)
class Spend:
    """Tokens and USD; `usd` is None when some model's cost is unknown."""

    tokens: int = 0
    usd: float | None = 0.0
    complete: bool = True
    """False when some call's spend is unknown (cancelled in flight): settled in full."""


@dataclass(frozen=True)
class Reservation:
    """A worst case held for one run."""

    id: str
    key: str
    worst: Spend


@dataclass(frozen=True)
class KeyUsage:
    """A key's spend so far and what is held for runs in flight."""

    spent_tokens: int
    spent_usd: float
    reserved_tokens: int
    reserved_usd: float


class LedgerError(RuntimeError):
    """The ledger's database cannot be used as given; the message never holds a password."""


class LedgerTransaction(Protocol):
    """One transaction of a store, holding one key's lock; each method touches that key."""

    def take_expired(self) -> list[tuple[int, float]]:
        """Delete the key's reservations past their expiry; their (tokens, usd)."""

    def usage(self) -> KeyUsage:
        """The key's spend and holds, as this transaction sees them."""

    def hold(self, reservation: Reservation, hold_seconds: float) -> None:
        """Insert `reservation`, expiring `hold_seconds` from now (the store's clock)."""

    def release(self, reservation_id: str) -> bool:
        """Delete a reservation; False when it was gone (charged on expiry)."""

    def add(self, tokens: int, usd: float) -> None:
        """Add to the key's spend."""


class LedgerStore(Protocol):
    """Where the spend is kept: its tables, its connection, its locks."""

    def transaction(self, key_name: str) -> AbstractContextManager[LedgerTransaction]:
        """A transaction holding `key_name`'s lock, so that no other process anywhere
        changes that key's spend or reservations until it ends; committed on a normal
        exit (a `return` included), rolled back on an exception."""

    def usage(self, key_name: str) -> KeyUsage:
        """The key's spend and holds, read in one snapshot (no lock)."""

    def close(self) -> None: ...


class SpendLedger:
    """Per-key spend in a SQLite file (a path, created on first use) or in a PostgreSQL
    database (a `postgresql://` URL: needs the `postgres` extra, shared by several
    machines)."""

    def __init__(
        self, target: str | os.PathLike[str], *, hold_seconds: float = DEFAULT_HOLD_S
    ) -> None:
        self.hold_seconds = hold_seconds
        self.location = describe_ledger(target)
        """Where the spend is kept, fit to print (a URL's password masked)."""
        self._store = open_store(target)

    def __repr__(self) -> str:
        return f"SpendLedger({self.location!r})"

    def close(self) -> None:
        self._store.close()

    def reserve(self, key: ServerKey, worst: Spend) -> Reservation:
        """Hold `worst` for a run of `key`, or raise a 402 saying what is left."""
        reservation = Reservation(id=uuid.uuid4().hex, key=key.name, worst=worst)
        with self._store.transaction(key.name) as tx:
            # Committed even when this request is refused.
            for tokens, usd in tx.take_expired():
                logger.warning("charging the expired reservation of key %s in full", key.name)
                tx.add(tokens, usd)
            usage = tx.usage()
            problem = _over_cap(key, usage, worst)
            if problem is None:
                tx.hold(reservation, self.hold_seconds)
        if problem is not None:
            raise GatewayError(
                402,
                f"the spend cap of key {key.name!r} would be exceeded: {problem}",
                metadata={
                    "key": key.name,
                    "spent": {"tokens": usage.spent_tokens, "usd": usage.spent_usd},
                    "reserved": {"tokens": usage.reserved_tokens, "usd": usage.reserved_usd},
                    "worst_case": {"tokens": worst.tokens, "usd": worst.usd},
                    "cap": {"tokens": key.max_tokens, "usd": key.max_usd},
                },
            )
        return reservation

    def settle(self, reservation: Reservation, actual: Spend | None) -> None:
        """Replace the reservation by what the run spent (None, a spend not `complete`,
        or a cost that is not known: its worst case). A reservation already charged on
        expiry is not charged twice."""
        if actual is None or not actual.complete:
            actual = reservation.worst
        usd = actual.usd if actual.usd is not None else (reservation.worst.usd or 0.0)
        with self._store.transaction(reservation.key) as tx:
            if not tx.release(reservation.id):
                logger.warning("reservation of key %s expired before it settled", reservation.key)
                return
            tx.add(actual.tokens, usd)

    def usage(self, key_name: str) -> KeyUsage:
        """What `key_name` has spent and holds now."""
        return self._store.usage(key_name)


def _over_cap(key: ServerKey, usage: KeyUsage, worst: Spend) -> str | None:
    if key.max_tokens is not None:
        committed = usage.spent_tokens + usage.reserved_tokens
        if committed + worst.tokens > key.max_tokens:
            return (
                f"{usage.spent_tokens} tokens spent and {usage.reserved_tokens} held, and this "
                f"request could spend {worst.tokens} more; the cap is {key.max_tokens} tokens"
            )
    if key.max_usd is not None:
        if worst.usd is None:
            return "the cost of this request cannot be bounded: some model has no price"
        committed_usd = usage.spent_usd + usage.reserved_usd
        if committed_usd + worst.usd > key.max_usd:
            return (
                f"${usage.spent_usd:.4f} spent and ${usage.reserved_usd:.4f} held, and this "
                f"request could spend ${worst.usd:.4f} more; the cap is ${key.max_usd}"
            )
    return None


# --- where the ledger is ---------------------------------------------------------------------


def is_database_url(target: str | os.PathLike[str]) -> bool:
    """Whether `target` names a database (`postgresql://...`) rather than a file."""
    return isinstance(target, str) and target.partition("://")[0].lower() in DATABASE_SCHEMES


def open_store(target: str | os.PathLike[str]) -> LedgerStore:
    """The store `target` names: a PostgreSQL URL, else a SQLite file's path."""
    if is_database_url(target):
        try:
            from langchain_fusion.server.ledger_postgres import PostgresStore
        except ImportError as error:  # psycopg is an extra
            raise LedgerError(
                "a spend ledger on PostgreSQL needs psycopg 3: "
                f"pip install 'langchain-fusion[postgres]' ({error})"
            ) from None
        return PostgresStore(str(target))
    if isinstance(target, str) and "://" in target:
        scheme = target.partition("://")[0]
        raise ValueError(
            f"the spend ledger {describe_ledger(target)!r} is a {scheme}:// URL: give a "
            "SQLite file's path or a postgresql:// URL"
        )
    from langchain_fusion.server.ledger_sqlite import SQLiteStore

    return SQLiteStore(Path(target))


def describe_ledger(target: str | os.PathLike[str]) -> str:
    """`target` fit to print: a path as it is, a URL with its password masked."""
    if isinstance(target, str) and "://" in target:
        return mask_url(target)
    return str(target)


MASK = "***"


def mask_url(url: str) -> str:
    """`url` with the password (in the user part or a `password=` parameter) masked."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not even a URL: show nothing of it but its scheme
        return f"{url.partition('://')[0]}://{MASK}"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hosts}" if colon else f"{user}@{hosts}"
    pairs = [pair.partition("=") for pair in parts.query.split("&") if pair]
    query = "&".join(
        f"{name}={MASK}" if name.lower() == "password" else f"{name}{equals}{value}"
        for name, equals, value in pairs
    )
    masked = f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
    return masked + (f"#{parts.fragment}" if parts.fragment else "")


def url_secrets(url: str) -> list[str]:
    """The password a URL holds, in every spelling a driver's message may quote it."""
    found: list[str] = []
    userinfo = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0].rpartition("@")[0]
    if ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    for pair in url.partition("?")[2].split("&"):
        name, _, value = pair.partition("=")
        if name.lower() == "password":
            found.append(value)
    return sorted(
        {spelling for raw in found for spelling in (raw, unquote(raw)) if spelling},
        key=len,
        reverse=True,
    )


def without_secrets(text: str, url: str) -> str:
    """`text` (a driver's message) with every spelling of `url`'s password masked."""
    for secret in url_secrets(url):
        text = text.replace(secret, MASK)
    return text
