"""A real PostgreSQL server for the tests, on loopback: the one `pgserver`'s wheel ships
(PostgreSQL's own binaries), or a PostgreSQL installed on the machine where that wheel has
none. PostgreSQL refuses to run as root: as root, it runs as the system user `pgserver`
(made when missing, as `pgserver` itself does), from a copy of the binaries when that user
cannot reach them (a checkout under /root).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

PASSWORD = "Ledger-pw:7f3a@x/9%q"
"""The ledger role's password: recognisable, and in need of quoting in a URL."""
QUOTED = quote(PASSWORD, safe="")
ROLE = "fusion"
SYSTEM_USER = "pgserver"
"""Who runs PostgreSQL when the tests run as root (the name `pgserver` itself uses)."""


def _binaries() -> Path:
    """PostgreSQL's bin/: pgserver's wheel, else a PostgreSQL installed on the machine."""
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    found = shutil.which("pg_ctl") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)), None
    )
    if found is None:
        pytest.fail("no PostgreSQL: pgserver has no wheel here; install PostgreSQL's server")
    return Path(found).parent


def _system_user() -> str | None:
    """Whom PostgreSQL runs as: this user, or (as root, which it refuses) SYSTEM_USER."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Postgres:
    """A PostgreSQL server of this module's: superuser on its socket, ROLE on 127.0.0.1."""

    bin: Path
    root: Path
    port: int
    user: str | None
    created: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    def run(self, tool: str, *args: str | Path) -> None:
        done = subprocess.run(
            [self.bin / tool, *args],
            user=self.user,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-3000:] if log.exists() else ""
            pytest.fail(f"{tool} {args} failed:\n{done.stdout}{done.stderr}{tail}")

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self.run("pg_ctl", "-D", self.data, "-l", self.root / "log", "-w", "-o", options, "start")

    def restart(self) -> None:
        self.run("pg_ctl", "-D", self.data, "-l", self.root / "log", "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=str(self.root), port=self.port, user="postgres", dbname="postgres", autocommit=True
        )

    def url(self, database: str, password: str = QUOTED) -> str:
        return f"postgresql://{ROLE}:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh database owned by ROLE: its name."""
        self.created += 1
        name = f"ledger_{self.created}"
        with self.admin() as admin:
            admin.execute(f"CREATE DATABASE {name} OWNER {ROLE}")
        return name


def _runs_as(user: str, binaries: Path) -> bool:
    try:
        probe = subprocess.run(
            [binaries / "postgres", "--version"], user=user, capture_output=True, check=False
        )
    except PermissionError:
        return False
    return probe.returncode == 0


def _copy_install(binaries: Path, root: Path) -> Path:
    """pgserver's install (and the libraries its tools load) copied where `root`'s owner
    can run it, in the same layout."""
    install = binaries.parent  # .../site-packages/pgserver/pginstall
    site = install.parent.parent
    target = root / "site"
    shutil.copytree(install, target / "pgserver" / "pginstall")
    if (site / "pgserver.libs").is_dir():
        shutil.copytree(site / "pgserver.libs", target / "pgserver.libs")
    for path in (target, *target.rglob("*")):
        path.chmod(path.stat().st_mode | 0o055)
    return target / "pgserver" / "pginstall" / "bin"


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A PostgreSQL server on a free port of 127.0.0.1, with ROLE able to log in with
    PASSWORD; removed afterwards."""
    user = _system_user()
    root = Path(tempfile.mkdtemp(prefix="fusion-pg-"))
    binaries = _binaries()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        if not _runs_as(user, binaries):  # the wheel sits where that user cannot go
            binaries = _copy_install(binaries, root)
    server = Postgres(binaries, root, _free_port(), user)
    try:
        server.run(
            "initdb",
            *("-D", server.data, "-U", "postgres", "--encoding=UTF8", "--no-sync"),
            *("--auth-local=trust", "--auth-host=scram-sha-256"),
        )
        server.start()
        with server.admin() as admin:
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(ROLE), sql.Literal(PASSWORD)
                )
            )
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
