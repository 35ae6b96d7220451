"""Run an untrusted Python program: its own process, directory, limits and (where the
platform allows) no network and a read-only view of the rest of the file system.

Each program runs in a fresh temporary directory, as a fresh process started by a small
launcher (a new single-threaded interpreter, so nothing unsafe runs between `fork` and
`exec` of our own, threaded, process). The launcher:

- sets resource limits: CPU seconds, address space, file size, open files, processes;
- as root (or in a user namespace), enters new network and mount namespaces: the network
  has no interface up, not even loopback, and every mount but the program's directory is
  remounted read-only;
- as root, drops to an unprivileged uid of its own (one per concurrent run), so that the
  process limit binds, the parent's `/proc/<pid>/environ` cannot be read, and every
  process the program left behind can be killed by uid;
- starts the program with an empty environment (no API keys), `python -I`.

After the run (or at the wall-clock limit) every process of that uid is killed; without a
mount namespace, the world-writable directories are searched for files the uid wrote, and
a program that wrote outside its directory fails.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SANDBOX_UID_BASE = 61_000
"""Unprivileged uids used for sandboxed programs (one per concurrent run, when root)."""
SANDBOX_UIDS = 512
OUTPUT_LIMIT = 64 * 1024
"""Bytes of stdout/stderr kept (and the program's file-size limit, x16)."""
_WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")

_uid_lock = threading.Lock()
_uid_cycle = itertools.cycle(range(SANDBOX_UIDS))
_uids_in_use: set[int] = set()


@dataclass(frozen=True)
class SandboxLimits:
    """What one program may use."""

    timeout: float = 10.0
    """Wall-clock seconds."""
    memory_mb: int = 1024
    """Address space (RLIMIT_AS)."""
    max_processes: int = 32
    """Processes of the sandbox uid (RLIMIT_NPROC); binds only when root drops privileges."""
    max_file_mb: int = 16
    """Largest file the program may write (RLIMIT_FSIZE)."""


@dataclass(frozen=True)
class SandboxResult:
    """How a program ended."""

    passed: bool
    """Exited with status 0 within the limits, and wrote nothing outside its directory."""
    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str
    wrote_outside: tuple[str, ...] = ()
    isolated_network: bool = False
    isolated_filesystem: bool = False

    @property
    def detail(self) -> str:
        """One line on why the program failed (empty when it passed)."""
        if self.passed:
            return ""
        if self.timed_out:
            return "timed out"
        if self.wrote_outside:
            return f"wrote outside its directory: {', '.join(self.wrote_outside[:3])}"
        tail = self.stderr.strip().splitlines()
        return tail[-1][:300] if tail else f"exit status {self.returncode}"


# The launcher runs as a fresh interpreter: limits, namespaces, privileges, then exec.
_LAUNCHER = r"""
import ctypes, json, os, resource, sys
spec = json.loads(sys.argv[1])
status = {"net": False, "fs": False}
report = open(spec["status"], "w")  # opened now: the file system may be read-only soon
def limit(kind, value):
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass
limit(resource.RLIMIT_CPU, spec["cpu"])
limit(resource.RLIMIT_AS, spec["memory"])
limit(resource.RLIMIT_FSIZE, spec["fsize"])
limit(resource.RLIMIT_NOFILE, 64)
limit(resource.RLIMIT_CORE, 0)
if spec["nproc"]:
    limit(resource.RLIMIT_NPROC, spec["nproc"])
libc = ctypes.CDLL(None, use_errno=True)
unshare = getattr(libc, "unshare", None)  # Linux only
NEWNS, NEWNET, NEWUSER = 0x00020000, 0x40000000, 0x10000000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
root = os.geteuid() == 0
outer_uid, outer_gid = os.geteuid(), os.getegid()
flags = NEWNS | NEWNET if root else NEWUSER | NEWNS | NEWNET
if unshare is not None and unshare(flags) == 0:
    status["net"] = True
    if not root:
        for path, text in (("/proc/self/setgroups", "deny"),
                           ("/proc/self/uid_map", f"0 {outer_uid} 1"),
                           ("/proc/self/gid_map", f"0 {outer_gid} 1")):
            try:
                with open(path, "w") as f:
                    f.write(text)
            except OSError:
                pass
    work = spec["work"].encode()
    if (libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0
            and libc.mount(work, work, None, MS_BIND, None) == 0):
        # Directories an unprivileged uid cannot traverse (a Python under /root): an empty
        # tmpfs hides the directory, and only the interpreter's trees come back inside it.
        # Every tree is staged before any directory is hidden: a second tree under the
        # same directory must not be looked for behind the first tree's tmpfs.
        staged = []
        for number, (top, path) in enumerate(spec["expose"]):
            stage = os.path.join(spec["stage"], str(number))
            os.makedirs(stage)
            libc.mount(path.encode(), stage.encode(), None, MS_BIND | MS_REC, None)
            staged.append((top, path, stage))
        for top in sorted({top for top, _, _ in staged}):
            libc.mount(b"tmpfs", top.encode(), b"tmpfs", 0, b"mode=0755")
        for _, path, stage in staged:
            os.makedirs(path, mode=0o755, exist_ok=True)
            libc.mount(stage.encode(), path.encode(), None, MS_BIND | MS_REC, None)
        mounts = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].encode().decode("unicode_escape").encode()
                if point != work:
                    mounts.append(point)
        # Deepest first, so that a parent never hides a child before its turn.
        ok = True
        for point in sorted(set(mounts), key=len, reverse=True):
            if libc.mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None) != 0:
                if point == b"/":
                    ok = False
        status["fs"] = ok
json.dump(status, report)
report.close()
if root:
    os.setgroups([])
    os.setgid(spec["uid"])
    os.setuid(spec["uid"])
os.chdir(spec["work"])
os.execve(spec["python"], [spec["python"], "-I", "-B", "main.py"], spec["env"])
"""

_KILLER = (
    "import os,sys; u=int(sys.argv[1]); os.setgroups([]); os.setgid(u); os.setuid(u); "
    "os.kill(-1, 9)"
)


def _hidden_trees(python: str | None = None) -> list[tuple[str, str]]:
    """(first untraversable ancestor, tree) for each interpreter tree others cannot reach."""
    trees = {os.path.dirname(os.path.realpath(python or sys.executable))}
    if python is None or python == sys.executable:
        trees |= {sys.prefix, sys.base_prefix}
    hidden = []
    for tree in sorted(os.path.realpath(t) for t in trees):
        parts = Path(tree).parts
        for depth in range(1, len(parts)):
            ancestor = os.path.join(*parts[:depth])
            if not os.stat(ancestor).st_mode & 0o001:
                hidden.append((ancestor, tree))
                break
    return hidden


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _take_uid() -> int:
    with _uid_lock:
        for _ in range(SANDBOX_UIDS):
            uid = SANDBOX_UID_BASE + next(_uid_cycle)
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid
    raise RuntimeError("no free sandbox uid: too many programs running at once")


def _release_uid(uid: int) -> None:
    with _uid_lock:
        _uids_in_use.discard(uid)


def _kill_uid(uid: int) -> None:
    """Kill every process of `uid` (the kernel's kill(-1) as that uid, from a helper)."""
    for _ in range(3):
        subprocess.run(
            [sys.executable, "-I", "-S", "-c", _KILLER, str(uid)],
            env={},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=30,
        )
        if not processes_of(uid):
            return


def processes_of(uid: int) -> list[int]:
    """Pids of the live processes owned by `uid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:") and int(line.split()[1]) == uid:
                if "State:\tZ" not in status:
                    found.append(int(entry.name))
                break
    return found


def _files_of(uid: int) -> list[str]:
    """Files and directories owned by `uid` under the world-writable directories."""
    found: list[str] = []
    for top in _WORLD_WRITABLE:
        for base, dirs, files in os.walk(top):
            for name in dirs + files:
                path = os.path.join(base, name)
                try:
                    if os.lstat(path).st_uid == uid:
                        found.append(path)
                except OSError:
                    continue
    return found


def _remove(paths: list[str]) -> None:
    for path in sorted(paths, key=len, reverse=True):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def run_python(
    code: str, limits: SandboxLimits | None = None, *, python: str | None = None
) -> SandboxResult:
    """Run `code` as `main.py` in a fresh directory, within `limits`, with the interpreter
    `python` (default: this one); never raises for anything the program does."""
    limits = limits or SandboxLimits()
    python = python or sys.executable
    root = _is_root()
    uid = _take_uid() if root else os.getuid()
    private = tempfile.mkdtemp(prefix="fusion-eval-")  # ours: status and output files
    work = tempfile.mkdtemp(prefix="fusion-eval-run-")
    try:
        Path(work, "main.py").write_text(code)
        if root:
            os.chown(work, uid, uid)
            os.chown(Path(work, "main.py"), uid, uid)
        os.chmod(work, 0o700)
        spec = {
            "cpu": max(1, int(limits.timeout) + 1),
            "memory": limits.memory_mb * 1024 * 1024,
            "fsize": limits.max_file_mb * 1024 * 1024,
            # Counted per uid: only meaningful on the sandbox's own uid (as root).
            "nproc": limits.max_processes if root else 0,
            "uid": uid,
            "work": work,
            "status": os.path.join(private, "status.json"),
            "python": python,
            "expose": _hidden_trees(python) if root else [],
            "stage": os.path.join(private, "stage"),
            "env": {"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"},
        }
        return _run(spec, limits, private, work, uid, root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)
        if root:
            _release_uid(uid)


def _run(
    spec: dict[str, object],
    limits: SandboxLimits,
    private: str,
    work: str,
    uid: int,
    root: bool,
) -> SandboxResult:
    out_path, err_path = os.path.join(private, "stdout"), os.path.join(private, "stderr")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, json.dumps(spec)],
            cwd=private,
            env={},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            close_fds=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + limits.timeout
        timed_out = False
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # Whatever the program left running dies with it: its group, and as root its uid.
            with contextlib.suppress(OSError):
                os.killpg(process.pid, 9)
            if root:
                _kill_uid(uid)
            process.wait()
    status: dict[str, bool] = {}
    with contextlib.suppress(OSError, ValueError):
        status = json.loads(Path(private, "status.json").read_text())
    wrote: list[str] = []
    if root and not status.get("fs"):
        wrote = [path for path in _files_of(uid) if not path.startswith(work)]
        _remove(wrote)
    returncode = None if timed_out else process.returncode
    return SandboxResult(
        passed=returncode == 0 and not wrote,
        returncode=returncode,
        timed_out=timed_out,
        stdout=_read(out_path),
        stderr=_read(err_path),
        wrote_outside=tuple(wrote),
        isolated_network=bool(status.get("net")),
        isolated_filesystem=bool(status.get("fs")),
    )


def _read(path: str) -> str:
    try:
        with open(path, "rb") as file:
            return file.read(OUTPUT_LIMIT).decode("utf-8", "replace")
    except OSError:
        return ""
