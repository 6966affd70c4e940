"""Sessions for tests, the book and linting; all share ONE environment (.venv).

    nox -s tests      unit tests, then every notebook at ci scale (repro run), then the ledger
    nox -s book       execute notebooks (reusing current runs), build the HTML book, check it
                      in headless Chromium
    nox -s lint       ruff
    nox -s notebooks  execute every notebook at a scale (--scale via posargs: -- --scale local)
    nox -s sync       re-pair every notebooks/**/*.py with its .ipynb (jupytext)
    nox -s bench      run the benchmarks under benchmarks/

The environment is made once by `_env` (python -m venv .venv, torch pinned from
constraints/ci.txt) and reused by every session, so torch is not reinstalled per session.
Delete .venv to start over.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests"]

ROOT = Path(__file__).parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".repro-installed"
BUILD = ROOT / "build"
EXECUTED = BUILD / "executed"


def _env(session: nox.Session) -> str:
    """Create or update the shared environment; return its python."""
    digest = hashlib.sha256()
    for f in ("pyproject.toml", "constraints/ci.txt"):
        digest.update((ROOT / f).read_bytes())
    want = digest.hexdigest()
    if not PY.exists():
        session.run(sys.executable, "-m", "venv", str(VENV), external=True)
    if not STAMP.exists() or STAMP.read_text() != want:
        pip = [str(PY), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        session.run(*pip, "--upgrade", "pip", external=True)
        # torch first, from the pinned wheels (a plain `torch` could pull a multi-GB build)
        session.run(*pip, "-c", "constraints/ci.txt", "torch", "torchvision", external=True)
        session.run(*pip, "-c", "constraints/ci.txt", "-e", ".[dev,book]", external=True)
        STAMP.write_text(want)
    return str(PY)


def _notebooks() -> list[Path]:
    return sorted(p for p in (ROOT / "notebooks").glob("*/[0-9]*.py"))


@nox.session
def lint(session: nox.Session) -> None:
    py = _env(session)
    session.run(py, "-m", "ruff", "check", "src", "tests", "benchmarks", "noxfile.py",
                "setup.py", "notebooks", external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests, then the notebooks at ci scale (2 at a time), then the ledger check."""
    py = _env(session)
    # artifacts cached by notebooks (teachers, tokenizers, data sets) start cold in build/, so
    # a run measures what a clean machine pays, not what an earlier session left behind
    env = {"CI": os.environ.get("CI", "1"), "REPRO_NUM_THREADS": "1",
           "REPRO_CACHE": os.environ.get("REPRO_CACHE", str(BUILD / "cache"))}
    session.run(py, "-m", "pytest", "-m", "not notebook and not book", "-n", "2",
                "--dist", "loadgroup", *session.posargs, external=True, env=env)
    session.run(py, "-m", "pytest", "-m", "notebook", "-n", "2", "tests/test_notebooks_run.py",
                external=True, env=env)
    session.run(py, "-m", "repro", "ledger", "--executed", str(EXECUTED), "--check",
                external=True)


@nox.session
def notebooks(session: nox.Session) -> None:
    """Execute every notebook (default ci scale; pass `-- --scale local` for another)."""
    py = _env(session)
    args = session.posargs or ["--scale", "ci"]
    for nb in _notebooks():
        session.run(py, "-m", "repro", "run", str(nb), *args, external=True,
                    env={"REPRO_NUM_THREADS": os.environ.get("REPRO_NUM_THREADS", "1")})


def _ensure_chromium(session: nox.Session) -> None:
    if shutil.which("chromium"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        session.log("installing Debian's chromium for the browser check")
        session.run("apt-get", "update", "-qq", external=True)
        session.run("apt-get", "install", "-y", "-qq", "chromium", external=True,
                    env={"DEBIAN_FRONTEND": "noninteractive"})
    else:
        session.error("the browser check needs Debian's chromium: `sudo apt-get install "
                      "chromium` (never `playwright install`; it downloads a browser)")


@nox.session
def book(session: nox.Session) -> None:
    """Execute once, use twice: stage the executed notebooks and build the book from them."""
    py = _env(session)
    scale = "ci"
    if "--scale" in session.posargs:
        scale = session.posargs[session.posargs.index("--scale") + 1]
    session.run(py, "-m", "repro", "book", "--scale", scale, external=True,
                env={"REPRO_NUM_THREADS": os.environ.get("REPRO_NUM_THREADS", "1")})
    _ensure_chromium(session)
    session.run(py, "-m", "pytest", "-m", "book", "tests/browser", "-p", "no:xdist",
                external=True)


@nox.session
def sync(session: nox.Session) -> None:
    """Update each .ipynb from its .py (the .py is the source of truth)."""
    py = _env(session)
    for nb in _notebooks():
        session.run(py, "-m", "jupytext", "--update", "--to", "ipynb", str(nb), external=True)


@nox.session
def bench(session: nox.Session) -> None:
    py = _env(session)
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        if "gpu" in script.stem and subprocess.run(
                [py, "-c", "import torch,sys; sys.exit(not torch.cuda.is_available())"]
        ).returncode:
            session.log(f"skipping {script.name}: no CUDA device")
            continue
        session.run(py, str(script), *session.posargs, external=True)
