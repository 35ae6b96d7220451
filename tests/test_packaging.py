"""What `pip install langchain-fusion` gets: the package and nothing else, and it runs.

The wheel and the sdist are built from this checkout with uv; the wheel is installed into a
new, empty virtual environment (dependencies at the versions of uv.lock, so that a release
published tomorrow cannot break this test), then imported and its command run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


def _run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, capture_output=True, text=True, check=True
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if UV is None:
        pytest.fail("uv is not installed: it is in the test dependencies (make test installs it)")
    out = tmp_path_factory.mktemp("dist")
    _run(UV, "build", "--quiet", "--out-dir", out, ROOT)
    return out


def _only(directory: Path, pattern: str) -> Path:
    found = list(directory.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def test_wheel_holds_the_package_and_nothing_else(dist: Path) -> None:
    wheel = _only(dist, "*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"langchain_fusion", "langchain_fusion-0.1.0.dist-info"}
    assert "langchain_fusion/py.typed" in names  # typed for users' mypy
    static = "langchain_fusion/server/playground/static/"
    for page_file in ("index.html", "app.js", "style.css"):  # `serve` shows the playground
        assert static + page_file in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_sdist_holds_the_sources_and_documents_only(dist: Path) -> None:
    sdist = _only(dist, "*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    root = names[0].split("/", 1)[0]
    inside = {name.split("/")[1] for name in names if name.count("/") >= 1}
    assert inside == {
        "langchain_fusion",
        "docs",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "pyproject.toml",
        "PKG-INFO",
        ".gitignore",  # hatchling keeps it, so that a build from the sdist ignores the same
    }
    assert f"{root}/langchain_fusion/__init__.py" in names


def test_wheel_installs_into_a_clean_environment_and_runs(dist: Path, tmp_path: Path) -> None:
    assert UV is not None
    venv = tmp_path / "venv"
    _run(UV, "venv", "--quiet", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    # The runtime dependencies at their locked versions; nothing of the dev environment.
    constraints = tmp_path / "constraints.txt"
    exported = _run(UV, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project")
    constraints.write_text(exported.stdout)
    wheel = _only(dist, "*.whl")
    _run(UV, "pip", "install", "--quiet", "--python", python, "-c", constraints, wheel)

    # Run from elsewhere, so that this checkout is not on the path.
    imported = _run(
        python, "-c", "import langchain_fusion; print(langchain_fusion.__file__)", cwd=tmp_path
    )
    assert str(venv) in imported.stdout  # the installed wheel, not this checkout
    helped = _run(venv / "bin" / "langchain-fusion", "--help", cwd=tmp_path)
    assert "serve" in helped.stdout
    absent = subprocess.run(
        [str(python), "-c", "import bench"], cwd=tmp_path, capture_output=True, text=True
    )
    assert absent.returncode != 0
    assert "No module named 'bench'" in absent.stderr
