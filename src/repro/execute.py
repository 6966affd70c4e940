"""Execute a notebook at a scale with papermill: ``repro run`` (CONTRACT §2).

papermill cannot open a ``.py`` file but accepts the NotebookNode that ``jupytext.read``
returns. Everything that can be checked is checked before the kernel starts (notebook exists,
scale exists, parameter names and types), because papermill alone only warns about an unknown
name and then runs the defaults. The output is written atomically: a run that fails leaves
nothing at the output path (the partial notebook goes to ``<output>.failed.ipynb`` for
diagnosis) and a run that succeeds replaces it in one step.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ReproError
from .scales import SCALES, read_notebook, read_scales, resolve_parameters


@dataclass
class RunResult:
    output: Path
    scale: str
    parameters: dict[str, Any]
    seconds: float


def source_hash(path: str | Path) -> str:
    """Hash of a notebook's source text: a staged run is reused only when this matches."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def default_output(path: Path, root: Path = Path("build/executed")) -> Path:
    """``notebooks/<paper>/NN_x.py`` → ``build/executed/<paper>/NN_x.ipynb``."""
    return root / path.parent.name / (path.stem + ".ipynb")


def run_notebook(
    path: str | Path,
    scale: str = "ci",
    overrides: dict[str, str] | None = None,
    output: str | Path | None = None,
    *,
    timeout: float | None = None,
    threads: int | None = None,
    log_output: bool = False,
) -> RunResult:
    """Run ``path`` at ``scale`` with ``overrides``; return where the executed copy went."""
    path = Path(path)
    if scale not in SCALES:
        raise ReproError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}")
    scales = read_scales(path)
    params = resolve_parameters(scales, scale, overrides)
    out = Path(output) if output is not None else default_output(path)
    if out.suffix != ".ipynb":
        raise ReproError(f"--output must end in .ipynb, got {out}")

    nb = read_notebook(path)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["repro"] = {
        "scale": scale,
        "parameters": params,
        "overrides": dict(overrides or {}),
        "source": str(path),
        "source_hash": source_hash(path),
    }
    import repro

    nb.metadata["repro"]["version"] = repro.__version__

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.running.ipynb")
    failed = out.with_name(f"{out.stem}.failed.ipynb")
    env_before = {k: os.environ.get(k) for k in ("REPRO_SCALE", "REPRO_NUM_THREADS",
                                                  "TQDM_MININTERVAL", "PYTHONHASHSEED",
                                                  "REPRO_PROGRESS")}
    os.environ["REPRO_SCALE"] = scale
    if threads is not None:
        os.environ["REPRO_NUM_THREADS"] = str(threads)
    os.environ.setdefault("TQDM_MININTERVAL", "10")  # quiet progress bars in logs
    os.environ["REPRO_PROGRESS"] = "summary"  # one line per loop in the saved notebook
    os.environ["PYTHONHASHSEED"] = "0"
    import papermill as pm

    start = time.perf_counter()
    try:
        pm.execute_notebook(
            nb,
            str(tmp),
            parameters=params,
            kernel_name="python3",
            language="python",
            cwd=str(path.parent.resolve()),
            progress_bar=False,
            log_output=log_output,
            execution_timeout=timeout,
            request_save_on_cell_execute=False,
        )
    except BaseException:
        if tmp.exists():
            os.replace(tmp, failed)
        raise
    finally:
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    _hide_injected_cell(tmp)
    os.replace(tmp, out)
    if failed.exists():
        failed.unlink()
    return RunResult(out, scale, params, time.perf_counter() - start)


def _hide_injected_cell(path: Path) -> None:
    """Fold papermill's injected-parameters cell in the book (papermill#731)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
    nbformat.write(nb, path)


def executed_is_current(source: Path, executed: Path, scale: str = "ci") -> bool:
    """True when ``executed`` came from the current ``source`` text at ``scale``."""
    if not executed.exists():
        return False
    import nbformat

    try:
        meta = nbformat.read(executed, as_version=4).metadata.get("repro", {})
    except Exception:  # unreadable → stale
        return False
    return (meta.get("source_hash") == source_hash(source) and meta.get("scale") == scale
            and not meta.get("overrides"))


def main_error(message: str) -> int:
    print(f"repro: error: {message}", file=sys.stderr)
    return 2
