"""Execute a notebook at a scale with papermill: ``repro run`` (CONTRACT §2).

papermill cannot open a ``.py`` file but accepts the NotebookNode that ``jupytext.read``
returns. Everything that can be checked is checked before the kernel starts (notebook exists,
scale exists, parameter names and types), because papermill alone only warns about an unknown
name and then runs the defaults; the output path too (an existing folder there, or a file where
a parent folder should be, is refused at once). The output is written atomically: a run that
succeeds replaces it in one step; a run that fails raises :class:`~repro.errors.NotebookFailed`
(one line naming the cell, the exception and the file to open) and leaves nothing at the output
path (a previous successful run there is moved to a hidden name before the kernel starts and
deleted when the run ends, so ``repro ledger`` cannot report its claims as current, even after a
run killed outright; the partial notebook goes to ``<output stem>.failed.ipynb`` for diagnosis).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NotebookFailed, ReproError
from .io import atomic_write
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
    check_output_path(out, path)

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
    failed.unlink(missing_ok=True)  # a diagnosis of an earlier run would mislead
    # The previous run's notebook must not pass for this one, even if this process is killed
    # (SIGTERM, SIGKILL): move it to a hidden name, which the ledger and the book skip, and
    # delete it once this run has ended either way.
    previous = out.with_name(f".{out.stem}.previous.ipynb")
    had_previous = out.exists()
    if had_previous:
        os.replace(out, previous)
    env_before = {k: os.environ.get(k) for k in ("REPRO_SCALE", "REPRO_NUM_THREADS",
                                                  "TQDM_MININTERVAL", "PYTHONHASHSEED",
                                                  "REPRO_PROGRESS", "TQDM_DISABLE",
                                                  "HF_HUB_DISABLE_PROGRESS_BARS")}
    os.environ["REPRO_SCALE"] = scale
    if threads is not None:
        os.environ["REPRO_NUM_THREADS"] = str(threads)
    os.environ.setdefault("TQDM_MININTERVAL", "10")  # quiet progress bars in logs
    os.environ["REPRO_PROGRESS"] = "summary"  # one line per loop in the saved notebook
    # other libraries' bars (transformers' "Writing model shards", timm, diffusers) would leave
    # their 0% ... 100% states in the saved outputs: off in executed notebooks
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
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
        _write_output(tmp, out)
    except BaseException as err:
        kept = None
        if tmp.exists():
            os.replace(tmp, failed)
            kept = failed
        out.unlink(missing_ok=True)
        failure = _failure(err, path, out, kept, had_previous)
        if failure is None:
            raise
        raise failure from err
    finally:
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        tmp.unlink(missing_ok=True)
        previous.unlink(missing_ok=True)
    return RunResult(out, scale, params, time.perf_counter() - start)


def check_output_path(out: Path, source: Path) -> None:
    """Refuse an output path that cannot take the executed notebook, before a kernel starts."""
    if out.suffix != ".ipynb":
        raise ReproError(f"--output must end in .ipynb, got {out}")
    if out.is_dir():
        raise ReproError(f"--output {out} is a folder: give a file path such as "
                         f"{out / (source.stem + '.ipynb')}")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ReproError(f"--output {out}: {parent} is a file, not a folder; choose "
                                 "another --output")
            break
    if out.resolve() in (source.resolve(), source.with_suffix(".ipynb").resolve()):
        raise ReproError(f"--output {out} would overwrite the notebook's own source; write the "
                         "executed copy elsewhere (the default is build/executed/)")


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _failure(err: BaseException, source: Path, out: Path, kept: Path | None,
             removed: bool) -> NotebookFailed | None:
    """The one-line :class:`NotebookFailed` for a kernel-side failure; None for anything
    else (an interrupt, or a bug here), which propagates as it is."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    cell, ename, evalue, trace = None, type(err).__name__, _one_line(err), str(err)
    if isinstance(err, PapermillExecutionError):
        cell, ename, evalue = err.exec_count, err.ename, _one_line(err.evalue)
        trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err.traceback or []))
        what = f"cell [{cell}] raised {ename}" + (f": {evalue}" if evalue else "")
    elif isinstance(err, CellTimeoutError):
        what = "a cell ran longer than the --timeout allows (seconds per cell)"
    elif isinstance(err, DeadKernelError):
        what = f"the kernel died ({evalue})"
    else:
        return None
    where = (f"Open {kept} for the traceback" if kept is not None
             else "No partial notebook was written")
    gone = " (the previous run there was removed)" if removed else ""
    return NotebookFailed(f"{source} failed: {what}. {where}; nothing is left at {out}{gone}.",
                          notebook=str(source), failed_path=str(kept) if kept else None,
                          cell=cell, ename=ename, evalue=evalue, traceback=trace)


def _write_output(tmp: Path, out: Path) -> None:
    """Fold papermill's injected-parameters cell in the book (papermill#731) and move the
    executed notebook to ``out`` atomically."""
    import nbformat

    nb = nbformat.read(tmp, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
    with atomic_write(out) as f:
        nbformat.write(nb, f)


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
