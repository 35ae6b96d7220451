"""The spend ledger on a shared PostgreSQL database: several gateways ("machines") on one
database, against a real PostgreSQL on loopback.

The server is the one `pgserver`'s wheel ships (PostgreSQL's own binaries; or a PostgreSQL
installed on the machine, where that wheel has none), started once for this module on a
free port of 127.0.0.1 with password (SCRAM) authentication; each test gets a database of
its own. PostgreSQL refuses to run as root: as root, it runs as the system user
`pgserver` (made when missing, as `pgserver` itself does).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from postgres_server import PASSWORD, QUOTED, ROLE, Postgres, running_postgres
from test_server_support import CAPPED_REQUEST, PANEL, serve_command
from typer.testing import CliRunner

from langchain_fusion.cli import app
from langchain_fusion.server import FusionServer, ServerConfig, ServerKey, Spend
from langchain_fusion.server.errors import GatewayError
from langchain_fusion.server.ledger import (
    KeyUsage,
    LedgerError,
    Reservation,
    SpendLedger,
    mask_url,
)
from langchain_fusion.testing import ModelScript, ScriptedOpenAIServer

KEY = "sk-fusion-team-3333333333"
REQUEST = CAPPED_REQUEST
AUTH = {"authorization": f"Bearer {KEY}"}


# --- one PostgreSQL for the module -----------------------------------------------------------


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def url(postgres: Postgres) -> str:
    """A `postgresql://` URL (with the password) of a fresh database."""
    return postgres.url(postgres.new_database())


@pytest.fixture
def ledgers() -> Iterator[list[SpendLedger]]:
    """Ledgers a test opens (append them): closed at the end."""
    opened: list[SpendLedger] = []
    yield opened
    for ledger in opened:
        ledger.close()


def _key(
    max_tokens: int | None = None, max_usd: float | None = None, name: str = "team"
) -> ServerKey:
    caps = {"max_tokens": max_tokens, "max_usd": max_usd}
    return ServerKey.model_validate(
        {"name": name, "key": KEY, **{k: v for k, v in caps.items() if v is not None}}
    )


def _leaks(text: str) -> bool:
    return PASSWORD in text or QUOTED in text


# --- the same semantics as the SQLite ledger -------------------------------------------------


def _scenario(open_ledger: Callable[[float], SpendLedger]) -> list[Any]:
    """Reserve, refuse, settle, expire: every outcome, to compare two ledgers by."""
    seen: list[Any] = []
    ledger, dead = open_ledger(900.0), open_ledger(0.0)  # "dead": its reservations expire

    def usage() -> tuple[Any, ...]:
        u = ledger.usage("team")
        return (u.spent_tokens, round(u.spent_usd, 9), u.reserved_tokens, round(u.reserved_usd, 9))

    def attempt(key: ServerKey, worst: Spend) -> Reservation | None:
        try:
            reservation = ledger.reserve(key, worst)
        except GatewayError as error:
            seen.append(("refused", error.status, error.message, error.metadata, usage()))
            return None
        seen.append(("held", usage()))
        return reservation

    key = _key(max_tokens=100, max_usd=1.0)
    first = attempt(key, Spend(tokens=30, usd=0.2))
    attempt(key, Spend(tokens=80, usd=0.1))  # over the tokens
    assert first is not None
    ledger.settle(first, Spend(tokens=10, usd=0.05))
    seen.append(("settled", usage()))
    attempt(key, Spend(tokens=5, usd=None))  # a USD cap needs a known cost
    second = attempt(key, Spend(tokens=60, usd=0.5))
    assert second is not None
    ledger.settle(second, None)  # no usage known: the worst case
    seen.append(("settled", usage()))
    attempt(key, Spend(tokens=20, usd=0.5))  # over the USD
    third = attempt(key, Spend(tokens=20, usd=0.4))
    assert third is not None
    ledger.settle(third, Spend(tokens=5, usd=None))  # cost unknown: the worst case's
    ledger.settle(third, Spend(tokens=5, usd=0.01))  # settled already: not charged twice
    seen.append(("settled", usage()))
    stale = dead.reserve(_key(max_tokens=200), Spend(tokens=40, usd=0.0))
    seen.append(("stale", usage()))
    time.sleep(0.01)
    attempt(_key(max_tokens=200), Spend(tokens=90, usd=0.0))  # the stale one is charged
    dead.settle(stale, Spend(tokens=1, usd=0.0))  # too late: not charged twice
    seen.append(("late", usage()))
    ledger.close()
    dead.close()
    return seen


def test_the_postgres_ledger_behaves_as_the_sqlite_one(
    url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="langchain_fusion.server.ledger")
    file = tmp_path / "spend.sqlite3"
    on_sqlite = _scenario(lambda hold: SpendLedger(file, hold_seconds=hold))
    sqlite_log = [r.getMessage() for r in caplog.records]
    caplog.clear()
    on_postgres = _scenario(lambda hold: SpendLedger(url, hold_seconds=hold))
    assert on_postgres == on_sqlite
    assert [r.getMessage() for r in caplog.records] == sqlite_log
    # ...and what they both said is right.
    assert [step[0] for step in on_postgres] == [
        *("held", "refused", "settled", "refused", "held", "settled"),
        *("refused", "held", "settled", "stale", "refused", "late"),
    ]
    refused = on_postgres[1]
    assert refused[1] == 402
    assert refused[2] == (
        "the spend cap of key 'team' would be exceeded: 0 tokens spent and 30 held, and this "
        "request could spend 80 more; the cap is 100 tokens"
    )
    assert refused[3] == {
        "key": "team",
        "spent": {"tokens": 0, "usd": 0.0},
        "reserved": {"tokens": 30, "usd": 0.2},
        "worst_case": {"tokens": 80, "usd": 0.1},
        "cap": {"tokens": 100, "usd": 1.0},
    }
    assert on_postgres[2] == ("settled", (10, 0.05, 0, 0.0))
    assert "cannot be bounded" in on_postgres[3][2]
    assert on_postgres[5] == ("settled", (70, 0.55, 0, 0.0))
    assert "$0.5500 spent and $0.0000 held" in on_postgres[6][2]
    assert on_postgres[8] == ("settled", (75, 0.95, 0, 0.0))  # 0.4 charged, once
    assert on_postgres[9] == ("stale", (75, 0.95, 40, 0.0))
    assert on_postgres[10][4] == (115, 0.95, 0, 0.0)  # the stale 40 charged in full
    assert on_postgres[11] == ("late", (115, 0.95, 0, 0.0))
    assert "charging the expired reservation of key team in full" in sqlite_log
    assert "reservation of key team expired before it settled" in sqlite_log


# --- several machines on one database --------------------------------------------------------


def _race(
    machines: list[SpendLedger], key: ServerKey, worst: Spend, attempts: int, threads: int
) -> tuple[list[Reservation], list[GatewayError]]:
    """`threads` threads per machine, each reserving `attempts` times, all at once."""
    held: list[Reservation] = []
    refused: list[GatewayError] = []
    start = threading.Barrier(len(machines) * threads)

    def work(ledger: SpendLedger) -> None:
        start.wait()
        for _ in range(attempts):
            try:
                held.append(ledger.reserve(key, worst))
            except GatewayError as error:
                refused.append(error)

    workers = [
        threading.Thread(target=work, args=(ledger,)) for ledger in machines for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return held, refused


ROUNDS = 10
"""Keys raced for, each by every thread at once, in the tests of concurrency."""


def test_machines_never_admit_more_than_the_cap_together(
    url: str, ledgers: list[SpendLedger]
) -> None:
    machines = [SpendLedger(url) for _ in range(4)]  # four connections, as four machines
    ledgers.extend(machines)
    worst = Spend(tokens=7, usd=0.0)
    # The last of a cap is where two machines could both take it: keys whose cap holds two
    # reservations, each raced for by every thread of every machine at once.
    for n in range(ROUNDS):
        key = _key(max_tokens=14, name=f"team-{n}")
        held, refused = _race(machines, key, worst, attempts=1, threads=3)
        assert len(held) == 2, f"{key.name}: {len(held)} reservations of 7 under a cap of 14"
        assert len(refused) == 4 * 3 - 2
        assert {error.status for error in refused} == {402}
        assert machines[n % 4].usage(key.name) == KeyUsage(0, 0.0, 14, 0.0)
    # One key, many reservations each.
    key = _key(max_tokens=100)
    held, refused = _race(machines, key, worst, attempts=8, threads=3)
    assert len(held) == 14  # 14 × 7 = 98: the fifteenth would be over
    assert len(refused) == 4 * 3 * 8 - 14
    assert {error.status for error in refused} == {402}
    assert all("spend cap of key 'team'" in error.message for error in refused)
    assert all(
        error.metadata["spent"]["tokens"] + error.metadata["reserved"]["tokens"] + 7 > 100
        for error in refused
    )
    assert {m.usage("team") for m in machines} == {KeyUsage(0, 0.0, 98, 0.0)}
    # Settling on other machines than the ones that reserved, all at once, replaces the
    # reservations by the spend; the room left is then taken, and no more.
    settlers = [
        threading.Thread(target=machines[i % 4].settle, args=(r, Spend(tokens=3, usd=0.0)))
        for i, r in enumerate(held)
    ]
    for settler in settlers:
        settler.start()
    for settler in settlers:
        settler.join()
    assert machines[0].usage("team") == KeyUsage(42, 0.0, 0, 0.0)
    again, _ = _race(machines, key, worst, attempts=4, threads=3)
    assert len(again) == 8  # 42 + 8 × 7 = 98
    assert machines[3].usage("team") == KeyUsage(42, 0.0, 56, 0.0)


_WORKER = """
import json, sys, threading
from langchain_fusion.server import ServerKey, Spend
from langchain_fusion.server.errors import GatewayError
from langchain_fusion.server.ledger import SpendLedger

url, machines, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ledgers = [SpendLedger(url) for _ in range(machines)]
print("ready", flush=True)
for line in sys.stdin:  # a key to race for: all threads at once, one reservation each
    key = ServerKey.model_validate({"name": line.strip(), "key": "sk-fusion-team-3333333333",
                                    "max_tokens": 14})
    held, refused = [], []
    start = threading.Barrier(machines * threads)

    def work(ledger):
        start.wait()
        try:
            held.append(ledger.reserve(key, Spend(tokens=7, usd=0.0)).id)
        except GatewayError as error:
            refused.append(error.status)

    workers = [threading.Thread(target=work, args=(l,)) for l in ledgers for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(json.dumps({"held": held, "refused": refused}), flush=True)
"""


def test_two_processes_never_admit_more_than_the_cap_together(
    url: str, ledgers: list[SpendLedger]
) -> None:
    # The URL goes by argv here only because the test's password is a test's.
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, url, "2", "3"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    ledger = SpendLedger(url)
    ledgers.append(ledger)
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for n in range(ROUNDS):
            for process in processes:  # both processes race for the key at once
                assert process.stdin is not None
                process.stdin.write(f"team-{n}\n")
                process.stdin.flush()
            results = [json.loads(p.stdout.readline()) for p in processes if p.stdout]
            held = [ident for result in results for ident in result["held"]]
            refused = [status for result in results for status in result["refused"]]
            assert len(held) == 2, f"team-{n}: {len(held)} reservations of 7 under a cap of 14"
            assert len(set(held)) == 2
            assert sorted(refused) == [402] * (2 * 2 * 3 - 2)
            assert ledger.usage(f"team-{n}") == KeyUsage(0, 0.0, 14, 0.0)
    finally:
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert [process.returncode for process in processes] == [0, 0]


def test_an_expired_reservation_is_charged_in_full_on_another_machine(
    url: str, ledgers: list[SpendLedger], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="langchain_fusion.server.ledger")
    died, alive = SpendLedger(url, hold_seconds=0.0), SpendLedger(url)
    ledgers.extend([died, alive])
    key = _key(max_tokens=100, max_usd=1.0)
    stale = died.reserve(key, Spend(tokens=60, usd=0.5))  # its machine "died" with it
    assert alive.usage("team") == KeyUsage(0, 0.0, 60, 0.5)  # held until it expires
    time.sleep(0.01)
    with pytest.raises(GatewayError) as over:
        alive.reserve(key, Spend(tokens=50, usd=0.1))  # the stale one was charged in full
    assert over.value.status == 402
    assert over.value.metadata["spent"] == {"tokens": 60, "usd": 0.5}
    assert over.value.metadata["reserved"] == {"tokens": 0, "usd": 0.0}
    died.settle(stale, Spend(tokens=10, usd=0.1))  # too late: not charged twice
    assert alive.usage("team") == KeyUsage(60, 0.5, 0, 0.0)
    assert [r.getMessage() for r in caplog.records] == [
        "charging the expired reservation of key team in full",
        "reservation of key team expired before it settled",
    ]
    alive.reserve(key, Spend(tokens=40, usd=0.5))  # what is left fits exactly


def test_the_ledger_survives_closing_reopening_and_a_database_restart(
    postgres: Postgres, url: str, ledgers: list[SpendLedger]
) -> None:
    key = _key(max_tokens=1000)
    first = SpendLedger(url)
    done = first.reserve(key, Spend(tokens=100, usd=0.0))
    first.settle(done, Spend(tokens=25, usd=0.0))
    open_run = first.reserve(key, Spend(tokens=100, usd=0.0))
    first.close()

    again = SpendLedger(url)  # the schema is there already
    ledgers.append(again)
    assert again.usage("team") == KeyUsage(25, 0.0, 100, 0.0)
    again.settle(open_run, Spend(tokens=30, usd=0.0))  # settled by another process
    assert again.usage("team") == KeyUsage(55, 0.0, 0, 0.0)

    postgres.restart()  # the ledger's connection dies with the server
    held = again.reserve(key, Spend(tokens=100, usd=0.0))  # on a new connection, first try
    assert again.usage("team") == KeyUsage(55, 0.0, 100, 0.0)
    postgres.restart()
    again.settle(held, Spend(tokens=5, usd=0.0))
    postgres.restart()
    assert again.usage("team") == KeyUsage(60, 0.0, 0, 0.0)


# --- the gateway -----------------------------------------------------------------------------


def _gateway(url: str, max_tokens: int) -> FusionServer:
    """One gateway "machine" with the key capped, on the ledger at `url`."""
    config = ServerConfig(
        parameters={"analysis_models": PANEL, "tools": []},
        keys=[_key(max_tokens=max_tokens)],
        ledger=url,
    )
    assert config.ledger_target() == url
    assert not _leaks(repr(config))
    return FusionServer(config.build())


def _post(base_url: str) -> httpx.Response:
    return httpx.post(f"{base_url}/chat/completions", json=REQUEST, headers=AUTH, timeout=60)


def _key_info(base_url: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{base_url}/key", headers=AUTH, timeout=10).json()["data"]
    return data


def test_two_gateways_share_a_cap_through_the_database(
    postgres: Postgres,
    scripted_server: ScriptedOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: the gateway's, psycopg's, httpx's
    monkeypatch.setenv("OPENROUTER_BASE_URL", scripted_server.base_url)
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-upstream")
    # The worst case of REQUEST, as the gateway estimates it: its 402 for a one-token cap.
    with _gateway(postgres.url(postgres.new_database()), 1) as probe:
        refused = _post(probe.base_url)
    assert refused.status_code == 402
    worst = refused.json()["error"]["metadata"]["worst_case"]["tokens"]

    url = postgres.url(postgres.new_database())
    scripted_server.set_script(PANEL[0], ModelScript(time_to_first_token=0.5))
    with _gateway(url, worst) as one, _gateway(url, worst) as two:
        results: list[httpx.Response] = []
        running = threading.Thread(target=lambda: results.append(_post(one.base_url)))
        running.start()
        while not scripted_server.requests_for(PANEL[0]):  # the first run is upstream now
            time.sleep(0.01)
        assert _key_info(two.base_url)["reserved_tokens"] == worst
        held = _post(two.base_url)  # the other machine sees the reservation
        running.join()
        assert results[0].status_code == 200, results[0].text
        spent = results[0].json()["usage"]["total_tokens"]
        assert held.status_code == 402
        error = held.json()["error"]
        assert error["code"] == 402
        assert "spend cap of key 'team'" in error["message"]
        assert error["metadata"]["reserved"]["tokens"] == worst
        info = _key_info(two.base_url)  # settled, and seen by both
        assert info == _key_info(one.base_url)
        assert info["usage_tokens"] == spent
        assert info["reserved_tokens"] == 0
        assert info["limit_tokens"] == worst
        assert info["limit_tokens_remaining"] == worst - spent
        assert _post(one.base_url).status_code == 402  # spent + a worst case is over
    assert len(scripted_server.requests_for(PANEL[1])) == 1  # the refused runs never started
    assert caplog.records
    assert not _leaks(caplog.text)


# --- the command, and the password ------------------------------------------------------------


def test_serve_takes_a_postgres_ledger_and_never_shows_its_password(
    postgres: Postgres, url: str, scripted_server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"name": "team", "key": KEY, "max_tokens": 1}]}))
    args = ("--keys-file", str(keys), "--ledger", url)
    with serve_command(scripted_server, *args, lines=2) as (base, lines):
        refused = _post(base)
        info = _key_info(base)
    assert f"spend ledger postgresql://{ROLE}:***@127.0.0.1:{postgres.port}/" in lines
    assert not _leaks(lines)
    assert refused.status_code == 402
    assert not _leaks(refused.text)
    assert (info["usage_tokens"], info["limit_tokens"]) == (0, 1)
    assert scripted_server.requests == []
    # A wrong password stops the command before it listens, and is not shown either.
    wrong = postgres.url(url.rsplit("/", 1)[1], password="Wrong-" + QUOTED)
    done = CliRunner().invoke(
        app,
        ["serve", "--port", "0", "--keys-file", str(keys), "--ledger", wrong],
        env={"OPENROUTER_BASE_URL": scripted_server.base_url, "OPENROUTER_API_KEY": "sk-or-t"},
    )
    assert done.exit_code == 2, done.output
    message = " ".join(done.stderr.split())
    assert "cannot connect to the spend ledger postgresql://fusion:***@127.0.0.1" in message
    assert "password authentication failed" in message
    assert not _leaks(done.output)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("wrong-" + QUOTED, "password authentication failed"),
        (QUOTED + "%zz", "invalid percent-encoded token"),  # libpq quotes the URL's text
    ],
)
def test_a_bad_ledger_url_is_an_error_without_the_password(
    postgres: Postgres, url: str, password: str, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    database = url.rsplit("/", 1)[1]
    with pytest.raises(LedgerError) as failed:
        SpendLedger(postgres.url(database, password=password))
    message = str(failed.value)
    assert problem in message
    assert f"postgresql://{ROLE}:***@127.0.0.1:{postgres.port}/{database}" in message
    assert not _leaks(message)
    assert failed.value.__cause__ is None
    assert failed.value.__context__ is None  # the driver's error, which may quote it, is gone
    assert not _leaks(caplog.text)


def test_ledger_targets_and_what_they_show(
    url: str, ledgers: list[SpendLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = SpendLedger(url.replace("postgresql://", "postgres://", 1))  # both spellings
    ledgers.append(ledger)
    assert ledger.location.startswith(f"postgres://{ROLE}:***@127.0.0.1:")
    assert not _leaks(repr(ledger))
    with pytest.raises(ValueError, match=r"mysql://u:\*\*\*@db/x'? is a mysql:// URL") as bad:
        SpendLedger(f"mysql://u:{QUOTED}@db/x")
    assert not _leaks(str(bad.value))
    assert mask_url(f"postgresql://db/x?sslmode=require&password={QUOTED}") == (
        "postgresql://db/x?sslmode=require&password=***"
    )
    # Without the extra, the error names it.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "langchain_fusion.server.ledger_postgres")
    with pytest.raises(LedgerError, match=r"pip install 'langchain-fusion\[postgres\]'") as bare:
        SpendLedger(url)
    assert not _leaks(str(bare.value))
