"""The spend ledger's PostgreSQL store: one database shared by gateways on several machines.

Every transaction first makes sure that its key has a row in `fusion_spend`, then locks
that row (`SELECT ... FOR UPDATE`) before it reads or writes anything else of the key.
PostgreSQL thus serialises, across every connection of every machine, whatever touches
one key (its reservations, its spend: reserve, settle, the charge of an expired
reservation), while other keys go on in parallel; two gateways cannot both take the last
of a cap. A read (`usage`) takes no lock: one statement, one snapshot.

Times are the database's (`now()`), so that the machines' clocks need not agree. The
driver is psycopg 3 (the `postgres` extra); this module is imported only when a ledger is
opened on a `postgresql://` URL. The URL may hold a password: no message says it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from langchain_fusion.server.ledger import (
    KeyUsage,
    LedgerError,
    Reservation,
    mask_url,
    without_secrets,
)

Connection = psycopg.Connection[TupleRow]
_T = TypeVar("_T")

_CONNECT_TIMEOUT_S = 10
_LOCK_TIMEOUT = "10s"
"""How long a transaction waits for a key's lock (SQLite's busy timeout is as long)."""
_SCHEMA_LOCK = int.from_bytes(b"fusion-L", "big")
"""The advisory lock under which the tables are created (gateways may start together)."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS fusion_spend (
        key TEXT PRIMARY KEY,
        tokens BIGINT NOT NULL DEFAULT 0,
        usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        updated TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS fusion_reservations (
        id TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        tokens BIGINT NOT NULL,
        usd DOUBLE PRECISION NOT NULL,
        expires TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS fusion_reservations_by_key ON fusion_reservations (key)",
)
_TABLES_EXIST = (
    "SELECT to_regclass('fusion_spend') IS NOT NULL "
    "AND to_regclass('fusion_reservations') IS NOT NULL"
)
_USAGE = """
SELECT
    COALESCE((SELECT tokens FROM fusion_spend WHERE key = %(key)s), 0),
    COALESCE((SELECT usd FROM fusion_spend WHERE key = %(key)s), 0),
    COALESCE((SELECT SUM(tokens) FROM fusion_reservations WHERE key = %(key)s), 0)::bigint,
    COALESCE((SELECT SUM(usd) FROM fusion_reservations WHERE key = %(key)s), 0)
"""
_CREATE_ROW = "INSERT INTO fusion_spend (key) VALUES (%s) ON CONFLICT (key) DO NOTHING"
_LOCK_ROW = "SELECT 1 FROM fusion_spend WHERE key = %s FOR UPDATE"


class PostgresStore:
    """The ledger's tables in a PostgreSQL database (created on first use when missing)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.location = mask_url(url)
        # One connection per process, used under a lock (as SQLite's); the database's row
        # locks keep the processes of every machine in order.
        self._lock = threading.Lock()
        self._db: Connection | None = None
        with self._lock:
            db = self._connection()
            try:
                with db.transaction():
                    db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    exists = db.execute(_TABLES_EXIST).fetchone()
                    if not (exists and exists[0]):  # needs no CREATE privilege when they do
                        for statement in _SCHEMA:
                            db.execute(statement)
                return
            except psycopg.Error as error:
                db.close()
                failure = self._error("cannot create the spend ledger's tables in", error)
        raise failure  # outside the `except`: the driver's error is not its context

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()

    @contextmanager
    def transaction(self, key_name: str) -> Iterator[_PostgresTransaction]:
        """`BEGIN`, the key's row locked, ... `COMMIT` (`ROLLBACK` on error)."""
        with self._lock:
            db = self._live(lambda db: _begin(db, key_name))
            try:
                yield _PostgresTransaction(db, key_name)
            except BaseException:
                if not db.broken:
                    db.execute("ROLLBACK")
                raise
            # A connection lost during COMMIT leaves it unknown whether the transaction
            # took: a reservation that did is charged in full on expiry, never lost.
            db.execute("COMMIT")

    def usage(self, key_name: str) -> KeyUsage:
        with self._lock:
            return self._live(lambda db: _usage(db, key_name))

    # --- the connection -----------------------------------------------------------------

    def _live(self, step: Callable[[Connection], _T]) -> _T:
        """`step` on the connection; when that connection turns out dead (the database
        restarted, or failed over), once more on a new one: a step run here has written
        nothing yet, so running it again is safe."""
        db = self._connection()
        try:
            return step(db)
        except psycopg.OperationalError:
            if not db.broken:
                raise
        return step(self._connection())

    def _connection(self) -> Connection:
        if self._db is not None and not self._db.closed and not self._db.broken:
            return self._db
        try:
            given = conninfo_to_dict(self._url)
            defaults: dict[str, Any] = {
                "connect_timeout": _CONNECT_TIMEOUT_S,
                "application_name": "langchain-fusion ledger",
                # A connection a firewall dropped in silence is found broken in about a
                # minute (idle) or 30 s (sending), not in the system's hours or minutes.
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
                "tcp_user_timeout": 30_000,
            }
            settings = {name: value for name, value in defaults.items() if name not in given}
            self._db = psycopg.connect(self._url, autocommit=True, **settings)
            self._db.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")
            return self._db
        except psycopg.Error as error:
            # libpq may quote the URL, password and all; its error is not even kept as
            # the context of ours (raised outside the `except`).
            failure = self._error("cannot connect to the spend ledger", error)
        raise failure

    def _error(self, doing: str, error: psycopg.Error) -> LedgerError:
        """`error` said with the URL's password masked."""
        return LedgerError(f"{doing} {self.location}: {without_secrets(str(error), self._url)}")


def _begin(db: Connection, key_name: str) -> Connection:
    db.execute("BEGIN")
    try:
        db.execute(_CREATE_ROW, (key_name,))
        db.execute(_LOCK_ROW, (key_name,))  # waits for whoever holds the key, anywhere
    except BaseException:
        if not db.broken:
            db.execute("ROLLBACK")
        raise
    return db


def _usage(db: Connection, key_name: str) -> KeyUsage:
    """Spend and holds in one statement, hence one snapshot."""
    row = db.execute(_USAGE, {"key": key_name}).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    return KeyUsage(int(row[0]), float(row[1]), int(row[2]), float(row[3]))


class _PostgresTransaction:
    """One key's steps while its row is locked, on the database's clock."""

    def __init__(self, db: Connection, key_name: str) -> None:
        self.db = db
        self.key = key_name

    def take_expired(self) -> list[tuple[int, float]]:
        rows = self.db.execute(
            "DELETE FROM fusion_reservations WHERE key = %s AND expires < now() "
            "RETURNING tokens, usd",
            (self.key,),
        ).fetchall()
        return [(int(tokens), float(usd)) for tokens, usd in rows]

    def usage(self) -> KeyUsage:
        return _usage(self.db, self.key)

    def hold(self, reservation: Reservation, hold_seconds: float) -> None:
        self.db.execute(
            "INSERT INTO fusion_reservations (id, key, tokens, usd, expires) "
            "VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s::float8))",
            (
                reservation.id,
                self.key,
                reservation.worst.tokens,
                reservation.worst.usd or 0.0,
                hold_seconds,
            ),
        )

    def release(self, reservation_id: str) -> bool:
        gone = self.db.execute(
            "DELETE FROM fusion_reservations WHERE id = %s AND key = %s",
            (reservation_id, self.key),
        )
        return gone.rowcount > 0

    def add(self, tokens: int, usd: float) -> None:
        self.db.execute(
            "UPDATE fusion_spend SET tokens = tokens + %s, usd = usd + %s, updated = now() "
            "WHERE key = %s",
            (tokens, usd, self.key),
        )
