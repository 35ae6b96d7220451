"""The spend ledger's SQLite store: one file, shared by the workers of one machine.

Each transaction is `BEGIN IMMEDIATE`, which takes the database's write lock at once and
which SQLite serialises across processes: a key's read-check-write cannot interleave with
another process's. The file is in WAL mode, so that readers never wait for the writer.
SQLite's locks need a local disk: several machines need `ledger_postgres.py`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langchain_fusion.server.ledger import KeyUsage, Reservation

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

_USAGE = """
SELECT
    COALESCE((SELECT tokens FROM spend WHERE key = :key), 0),
    COALESCE((SELECT usd FROM spend WHERE key = :key), 0),
    COALESCE((SELECT SUM(tokens) FROM reservations WHERE key = :key), 0),
    COALESCE((SELECT SUM(usd) FROM reservations WHERE key = :key), 0)
"""


class SQLiteStore:
    """The ledger's tables in a SQLite file (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per process, used under a lock; other processes are kept in
        # order by SQLite's own file locks (BEGIN IMMEDIATE waits up to the busy timeout).
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path,
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

    @contextmanager
    def transaction(self, key_name: str) -> Iterator[_SQLiteTransaction]:
        """`BEGIN IMMEDIATE` ... `COMMIT` (`ROLLBACK` on error): the whole file's write
        lock, which holds every key's."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteTransaction(self._db, key_name, time.time())
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def usage(self, key_name: str) -> KeyUsage:
        with self._lock:
            return _usage(self._db, key_name)


class _SQLiteTransaction:
    """One key's steps inside `BEGIN IMMEDIATE`, on this machine's clock."""

    def __init__(self, db: sqlite3.Connection, key_name: str, now: float) -> None:
        self.db = db
        self.key = key_name
        self.now = now

    def take_expired(self) -> list[tuple[int, float]]:
        expired = self.db.execute(
            "SELECT id, tokens, usd FROM reservations WHERE key = ? AND expires < ?",
            (self.key, self.now),
        ).fetchall()
        for ident, _, _ in expired:
            self.db.execute("DELETE FROM reservations WHERE id = ?", (ident,))
        return [(int(tokens), float(usd)) for _, tokens, usd in expired]

    def usage(self) -> KeyUsage:
        return _usage(self.db, self.key)

    def hold(self, reservation: Reservation, hold_seconds: float) -> None:
        self.db.execute(
            "INSERT INTO reservations (id, key, tokens, usd, expires) VALUES (?, ?, ?, ?, ?)",
            (
                reservation.id,
                self.key,
                reservation.worst.tokens,
                reservation.worst.usd or 0.0,
                self.now + hold_seconds,
            ),
        )

    def release(self, reservation_id: str) -> bool:
        gone = self.db.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))
        return gone.rowcount > 0

    def add(self, tokens: int, usd: float) -> None:
        self.db.execute(
            "INSERT INTO spend (key, tokens, usd, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET tokens = tokens + excluded.tokens, "
            "usd = usd + excluded.usd, updated = excluded.updated",
            (self.key, tokens, usd, self.now),
        )


def _usage(db: sqlite3.Connection, key_name: str) -> KeyUsage:
    """Spend and holds in one statement, hence one snapshot."""
    row = db.execute(_USAGE, {"key": key_name}).fetchone()
    return KeyUsage(int(row[0]), float(row[1]), int(row[2]), float(row[3]))
