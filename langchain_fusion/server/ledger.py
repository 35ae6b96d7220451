"""The spend ledger: what each server key has spent, in SQLite, so that a cap survives a
restart and holds across several worker processes on one machine.

Before a run, the worst case is reserved; the run starts only when spent + reserved +
worst case fits under the key's cap (else 402). After it, the reservation is replaced by
what was actually spent. Both steps are one `BEGIN IMMEDIATE` transaction each, which
SQLite serialises across processes, so two workers cannot both take the last of a cap.

A reservation whose process died before settling expires after `hold_seconds` and is then
charged in full: the calls it covered may have been made, and a cap must never be
exceeded. SQLite's locking needs a local disk: several machines need a shared database
(not implemented here; see docs/deployment.md).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from langchain_fusion.server.errors import GatewayError
from langchain_fusion.server.keys import ServerKey

logger = logging.getLogger(__name__)

DEFAULT_HOLD_S = 900.0
"""How long a reservation may stay unsettled: three times a deliberation's default deadline."""
_BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    key TEXT PRIMARY KEY,
    tokens INTEGER NOT NULL DEFAULT 0,
    usd REAL NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    usd REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_by_key ON reservations (key);
"""


@dataclass(frozen=True)
class Spend:
    """Tokens and USD; `usd` is None when some model's cost is unknown."""

    tokens: int = 0
    usd: float | None = 0.0


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


class SpendLedger:
    """Per-key spend in a SQLite file (created on first use)."""

    def __init__(self, path: str | Path, *, hold_seconds: float = DEFAULT_HOLD_S) -> None:
        self.path = Path(path)
        self.hold_seconds = hold_seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per process, used under a lock; other processes are kept in
        # order by SQLite's own file locks (BEGIN IMMEDIATE waits up to the busy timeout).
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=_BUSY_TIMEOUT_MS / 1000,
        )
        self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode = WAL")  # readers never wait for the writer
        self._db.execute("PRAGMA synchronous = NORMAL")  # WAL keeps it safe across crashes
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def reserve(self, key: ServerKey, worst: Spend) -> Reservation:
        """Hold `worst` for a run of `key`, or raise a 402 saying what is left."""
        reservation = Reservation(id=uuid.uuid4().hex, key=key.name, worst=worst)
        with self._lock, _immediate(self._db):
            now = time.time()
            self._charge_expired(now)  # committed even when this request is refused
            usage = self._usage(key.name)
            problem = _over_cap(key, usage, worst)
            if problem is None:
                self._db.execute(
                    "INSERT INTO reservations (id, key, tokens, usd, expires) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        reservation.id,
                        key.name,
                        worst.tokens,
                        worst.usd or 0.0,
                        now + self.hold_seconds,
                    ),
                )
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
        """Replace the reservation by what the run spent (None, or a cost that is not
        known: its worst case). A reservation already charged on expiry is not charged
        twice."""
        actual = actual or reservation.worst
        usd = actual.usd if actual.usd is not None else (reservation.worst.usd or 0.0)
        with self._lock, _immediate(self._db):
            gone = self._db.execute("DELETE FROM reservations WHERE id = ?", (reservation.id,))
            if gone.rowcount == 0:
                logger.warning("reservation of key %s expired before it settled", reservation.key)
                return
            self._add(reservation.key, actual.tokens, usd, time.time())

    def usage(self, key_name: str) -> KeyUsage:
        """What `key_name` has spent and holds now."""
        with self._lock:
            return self._usage(key_name)

    # --- inside a transaction ---------------------------------------------------------

    def _usage(self, key_name: str) -> KeyUsage:
        spent = self._db.execute(
            "SELECT tokens, usd FROM spend WHERE key = ?", (key_name,)
        ).fetchone() or (0, 0.0)
        held = self._db.execute(
            "SELECT COALESCE(SUM(tokens), 0), COALESCE(SUM(usd), 0) FROM reservations "
            "WHERE key = ?",
            (key_name,),
        ).fetchone()
        return KeyUsage(int(spent[0]), float(spent[1]), int(held[0]), float(held[1]))

    def _charge_expired(self, now: float) -> None:
        expired = self._db.execute(
            "SELECT id, key, tokens, usd FROM reservations WHERE expires < ?", (now,)
        ).fetchall()
        for ident, key_name, tokens, usd in expired:
            logger.warning("charging the expired reservation of key %s in full", key_name)
            self._db.execute("DELETE FROM reservations WHERE id = ?", (ident,))
            self._add(key_name, int(tokens), float(usd), now)

    def _add(self, key_name: str, tokens: int, usd: float, now: float) -> None:
        self._db.execute(
            "INSERT INTO spend (key, tokens, usd, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET tokens = tokens + excluded.tokens, "
            "usd = usd + excluded.usd, updated = excluded.updated",
            (key_name, tokens, usd, now),
        )


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


class _immediate:
    """`BEGIN IMMEDIATE` ... `COMMIT` (`ROLLBACK` on error): takes the write lock at once,
    so that the read-check-write of a reservation cannot interleave with another process."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
