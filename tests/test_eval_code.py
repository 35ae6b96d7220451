"""The code grader and its sandbox: HumanEval's canonical solutions pass, broken ones fail,
and a hostile program fails its own item and nothing else."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from langchain_fusion.eval import EvalItem, SandboxLimits, load_humaneval, run_python
from langchain_fusion.eval.code_grader import CodeGrader, build_program, extract_code
from langchain_fusion.eval.sandbox import _hidden_trees, processes_of

LINUX = sys.platform.startswith("linux")
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
SECRET = "sk-or-v1-FAKE-eval-sandbox-must-not-see-this"

ADD = EvalItem(
    "add",
    "def add(a, b):",
    "    return a + b\n",
    {
        "prompt": 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n',
        "entry_point": "add",
        "test": (
            "def check(candidate):\n"
            "    assert candidate(2, 3) == 5\n"
            "    assert candidate(-1, 1) == 0\n"
        ),
    },
)
CORRECT_BODY = "    return a + b\n"


def hostile(prefix: str) -> str:
    """A correct solution preceded by something the sandbox must stop."""
    return f"```python\n{prefix}\ndef add(a, b):\n    return a + b\n```"


@pytest.fixture(scope="module")
def humaneval() -> list[EvalItem]:
    return load_humaneval()


@pytest.fixture
def loopback_listener() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections (a sandboxed program must not)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    sock.close()


def grade(item: EvalItem, answer: str, timeout: float = 5.0) -> tuple[bool, str]:
    result = asyncio.run(CodeGrader(timeout=timeout).grade(item, answer))
    return result.correct, result.detail


def test_humaneval_has_164_problems_graded_as_code(humaneval: list[EvalItem]) -> None:
    assert len(humaneval) == 164
    assert humaneval[0].id == "HumanEval/0"
    assert all({"prompt", "test", "entry_point"} <= set(item.fields) for item in humaneval)
    from langchain_fusion.eval import default_grader

    assert default_grader(humaneval) == "code"


SAMPLE = 16
"""HumanEval problems graded by default (seeded); `-m full` (`make test-all`) grades all."""


def sample(items: list[EvalItem], k: int = SAMPLE, seed: int = 20) -> list[EvalItem]:
    """A repeatable sample; the first problem is always in it."""
    rest = random.Random(seed).sample(items[1:], k - 1)
    return [items[0], *sorted(rest, key=lambda item: int(item.id.split("/")[1]))]


async def assert_canonical_passes_and_broken_fails(items: list[EvalItem]) -> None:
    grader = CodeGrader(timeout=10, concurrency=4)

    def broken(item: EvalItem) -> str:
        # The canonical solution, whose every result is replaced by a value no test expects.
        body = str(item.fields["canonical_solution"])
        return body.replace("return ", "return _Wrong() or ") + (
            "\n\nclass _Wrong:\n    def __bool__(self):\n        return True\n"
        )

    canonical = await asyncio.gather(
        *(grader.grade(item, item.fields["canonical_solution"]) for item in items)
    )
    failed = [item.id for item, g in zip(items, canonical, strict=True) if not g.correct]
    assert failed == []
    as_chat = await asyncio.gather(
        *(
            grader.grade(
                item,
                "Here it is:\n```python\n"
                + item.fields["prompt"]
                + item.fields["canonical_solution"]
                + "```\nDone.",
            )
            for item in items
        )
    )
    assert all(g.correct for g in as_chat)
    wrong = await asyncio.gather(*(grader.grade(item, broken(item)) for item in items))
    passed = [item.id for item, g in zip(items, wrong, strict=True) if g.correct]
    assert passed == []


async def test_a_seeded_sample_of_canonical_solutions_pass_and_broken_variants_fail(
    humaneval: list[EvalItem],
) -> None:
    chosen = sample(humaneval)
    assert len({item.id for item in chosen}) == SAMPLE
    assert [item.id for item in chosen] == [item.id for item in sample(humaneval)]  # seeded
    await assert_canonical_passes_and_broken_fails(chosen)


@pytest.mark.full
async def test_every_canonical_solution_passes_and_a_broken_variant_of_each_fails(
    humaneval: list[EvalItem],
) -> None:
    await assert_canonical_passes_and_broken_fails(humaneval)


def test_extracting_code_and_building_the_program() -> None:
    assert extract_code("text\n```python\nx = 1\n```\n```py\ny = 2\n```") == "y = 2\n"
    assert extract_code("no fence") == "no fence"
    assert grade(ADD, CORRECT_BODY) == (True, "tests passed")
    assert grade(ADD, hostile(""))[0]
    assert not grade(ADD, "    return a - b\n")[0]
    program = build_program(ADD, hostile(""))
    assert program.rstrip().endswith("check(add)")


needs_linux = pytest.mark.skipif(not LINUX, reason="the sandbox's isolation is Linux's")


@needs_linux
def test_an_infinite_loop_times_out() -> None:
    correct, detail = grade(ADD, hostile("while True:\n    pass"), timeout=2)
    assert not correct
    assert detail == "timed out"


@needs_linux
@pytest.mark.skipif(not ROOT, reason="the process limit binds only on an unprivileged uid")
def test_a_fork_bomb_fails_and_leaves_no_process_behind() -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = run_python(bomb + "\n", SandboxLimits(timeout=2))
    assert not result.passed
    assert result.timed_out
    leftovers = [uid for uid in range(61_000, 61_000 + 64) if processes_of(uid)]
    assert leftovers == []


@needs_linux
def test_a_detached_child_does_not_outlive_the_run() -> None:
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
        "print('parent done')\n"
    )
    before = {p for uid in range(61_000, 61_064) for p in processes_of(uid)}
    result = run_python(code, SandboxLimits(timeout=5))
    assert result.passed
    assert result.stdout == "parent done\n"
    after = {p for uid in range(61_000, 61_064) for p in processes_of(uid)}
    assert after <= before


@needs_linux
def test_a_memory_hog_fails() -> None:
    correct, detail = grade(ADD, hostile("x = bytearray(8 * 1024 ** 3)"))
    assert not correct
    assert "MemoryError" in detail


@needs_linux
def test_a_write_outside_its_directory_fails_and_leaves_nothing(tmp_path: Path) -> None:
    target = Path("/tmp") / f"fusion-eval-escape-{os.getpid()}"
    correct, detail = grade(ADD, hostile(f"open({str(target)!r}, 'w').write('x')"))
    assert not correct
    assert "Read-only file system" in detail or "Permission denied" in detail or "wrote" in detail
    assert not target.exists()
    # Its own directory is writable.
    assert grade(ADD, hostile("open('scratch.txt', 'w').write('ok')"))[0]


SYSTEM_PYTHON = next(
    (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(p)), None
)


@needs_linux
@pytest.mark.skipif(not ROOT, reason="the fallback check looks for files of the sandbox uid")
@pytest.mark.skipif(
    SYSTEM_PYTHON is None or bool(_hidden_trees(SYSTEM_PYTHON)),
    reason="needs a Python an unprivileged uid can run without a mount namespace",
)
def test_without_namespaces_a_write_outside_is_found_and_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from langchain_fusion.eval import sandbox

    namespaces = "if unshare is not None and unshare(flags) == 0:"
    assert namespaces in sandbox._LAUNCHER
    monkeypatch.setattr(sandbox, "_LAUNCHER", sandbox._LAUNCHER.replace(namespaces, "if False:"))
    target = Path("/tmp") / f"fusion-eval-fallback-{os.getpid()}"
    nested = Path("/var/tmp") / f"fusion-eval-fallback-dir-{os.getpid()}"
    code = (
        f"open({str(target)!r}, 'w').write('x')\n"
        f"import os\nos.makedirs({str(nested / 'deeper')!r})\n"
    )
    result = run_python(code, python=SYSTEM_PYTHON)
    assert not result.isolated_filesystem
    assert not result.passed
    assert str(target) in result.wrote_outside
    assert "wrote outside its directory" in result.detail
    assert not target.exists()
    assert not nested.exists()
    # Without the namespace, a clean program still passes.
    assert run_python("print('ok')\n", python=SYSTEM_PYTHON).passed


@needs_linux
def test_api_keys_in_our_environment_are_not_in_the_programs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRET)
    reads_env = "import os\nassert os.environ.get('OPENROUTER_API_KEY') == " + repr(SECRET)
    assert not grade(ADD, hostile(reads_env))[0]
    reads_parent = (
        "import os\nassert " + repr(SECRET) + " in open(f'/proc/{os.getppid()}/environ').read()"
    )
    assert not grade(ADD, hostile(reads_parent))[0]
    assert SECRET not in run_python("import os\nprint(dict(os.environ))\n").stdout


@needs_linux
def test_a_network_socket_fails(loopback_listener: int) -> None:
    connect = (
        "import socket\n"
        f"socket.create_connection(('127.0.0.1', {loopback_listener}), timeout=2).close()"
    )
    result = run_python(connect + "\n")
    if not result.isolated_network:
        pytest.skip("no network namespace on this platform")
    assert not result.passed
    assert not grade(ADD, hostile(connect))[0]


@needs_linux
async def test_hostile_programs_fail_only_their_own_items(
    loopback_listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    grader = CodeGrader(timeout=3, concurrency=4)
    hostile_prefixes = [
        "while True:\n    pass",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "x = bytearray(8 * 1024 ** 3)",
        "open('/tmp/fusion-eval-escape-concurrent', 'w').write('x')",
        "import os\nassert os.environ['OPENROUTER_API_KEY']",
        f"import socket\nsocket.create_connection(('127.0.0.1', {loopback_listener}), 2)",
    ]
    answers = [hostile(prefix) for prefix in hostile_prefixes] + [CORRECT_BODY] * 4
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRET)
    grades = await asyncio.gather(*(grader.grade(ADD, answer) for answer in answers))
    assert [g.correct for g in grades] == [False] * len(hostile_prefixes) + [True] * 4
    assert not await asyncio.to_thread(os.path.exists, "/tmp/fusion-eval-escape-concurrent")


BASE_HIDDEN = [top for top, tree in _hidden_trees() if tree == os.path.realpath(sys.base_prefix)]


@pytest.mark.skipif(not ROOT, reason="interpreter trees are hidden only for the sandbox uid")
@pytest.mark.skipif(not BASE_HIDDEN, reason="this interpreter is readable by every uid")
@needs_linux
def test_an_environment_beside_its_hidden_interpreter_still_runs() -> None:
    """A virtual environment in the same unreadable directory as its base interpreter (a
    checkout under /root with pyenv's Python, as uv's isolated environments are): both
    trees are brought back inside the hidden directory, whichever sorts first."""
    import shutil
    import subprocess
    import tempfile

    # Named to sort before the base interpreter's tree: the order that once hid it.
    home = tempfile.mkdtemp(prefix=".a-fusion-sandbox-", dir=BASE_HIDDEN[0])
    try:
        venv = Path(home) / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        sandbox = Path(__file__).resolve().parents[1] / "langchain_fusion" / "eval" / "sandbox.py"
        script = (
            "import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('sandbox', {str(sandbox)!r})\n"
            "module = importlib.util.module_from_spec(spec)\n"
            "sys.modules['sandbox'] = module\n"
            "spec.loader.exec_module(module)\n"
            "result = module.run_python('import json; print(json.dumps([1 + 1]))')\n"
            "print(result.passed, result.stdout.strip(), result.isolated_filesystem)\n"
        )
        ran = subprocess.run(
            [str(venv / "bin" / "python"), "-c", script],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert ran.stdout.split() == ["True", "[2]", "True"], ran.stdout + ran.stderr
