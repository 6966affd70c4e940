"""Build the book: execute once, use twice (CONTRACT §7).

1. Every notebook is executed at a scale with :func:`repro.execute.run_notebook` into
   ``build/executed/<paper>/`` — unless a run of the same source text at the same scale is
   already there (the test session leaves exactly those runs behind).
2. ``book/`` is copied to ``build/book_src/`` and the executed notebooks are staged at their
   repository paths (``notebooks/<paper>/NN_x.ipynb``), so Colab buttons point at the committed
   paired ``.ipynb``; the ledger's status page and benchmark tables are generated beside them.
3. Jupyter Book 1 builds HTML with ``execute_notebooks: off`` and ``-W -n --keep-going``:
   the book shows exactly the outputs that were checked.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .errors import ReproError

ROOT = Path.cwd()


def _notebooks(root: Path) -> list[Path]:
    return sorted((root / "notebooks").glob("*/[0-9]*.py"))


def execute_all(root: Path, scale: str = "ci", executed: Path | None = None,
                force: bool = False) -> list[Path]:
    from .execute import default_output, executed_is_current, run_notebook

    executed = executed or root / "build" / "executed"
    outs = []
    for nb in _notebooks(root):
        out = default_output(nb.relative_to(root), executed)
        if not force and executed_is_current(nb, out, scale):
            print(f"reusing {out} (same source, scale {scale})")
        else:
            res = run_notebook(nb, scale, output=out)
            print(f"executed {nb.relative_to(root)} at {scale} in {res.seconds:.1f} s")
        outs.append(out)
    return outs


def benchmark_tables(root: Path) -> dict[str, str]:
    """Markdown tables from the committed benchmark results (``benchmarks/results/*.json``)."""
    from .bench import format_table

    tables = {}
    for path in sorted((root / "benchmarks" / "results").glob("*.json")):
        doc = json.loads(path.read_text())
        rows = doc["rows"]
        cols = list(rows[0])
        md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in rows:
            md.append("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c])
                                        for c in cols) + " |")
        meta = doc.get("meta", {})
        caption = ", ".join(f"{k}: {v}" for k, v in meta.items())
        tables[path.stem] = "\n".join(md) + (f"\n\n*Measured with* `{doc.get('command', '')}`"
                                             f" — {caption}\n" if caption else "\n")
        _ = format_table  # same numbers as the script prints
    return tables


def stage(root: Path, executed: Path, staging: Path) -> Path:
    from . import ledger

    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(root / "book", staging)
    for nb in sorted(executed.glob("*/*.ipynb")):
        if nb.name.startswith(".") or nb.name.endswith(".failed.ipynb"):
            continue
        dest = staging / "notebooks" / nb.parent.name / nb.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(nb, dest)
    rows = ledger.build(executed, root / "notebooks")
    (staging / "status.md").write_text(ledger.status_markdown(rows))
    for name, table in benchmark_tables(root).items():
        (staging / "_generated").mkdir(exist_ok=True)
        (staging / "_generated" / f"{name}.md").write_text(table)
    return staging


def build(root: Path | None = None, scale: str = "ci", force: bool = False) -> Path:
    root = root or ROOT
    if not (root / "book" / "_toc.yml").exists():
        raise ReproError(f"no book/_toc.yml under {root}: run from the repository root")
    executed = root / "build" / "executed"
    t0 = time.perf_counter()
    execute_all(root, scale, executed, force)
    t1 = time.perf_counter()
    staging = stage(root, executed, root / "build" / "book_src")
    html = root / "build" / "html"
    cmd = [sys.executable, "-m", "jupyter_book", "build", str(staging), "--path-output",
           str(root / "build" / "jb"), "-W", "-n", "--keep-going"]
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent))
    if jb:
        cmd = [jb, *cmd[3:]]
    subprocess.run(cmd, check=True)
    if html.exists():
        shutil.rmtree(html)
    shutil.copytree(root / "build" / "jb" / "_build" / "html", html)
    t2 = time.perf_counter()
    print(f"notebooks: {t1 - t0:.0f} s, book build: {t2 - t1:.0f} s -> {html / 'index.html'}")
    return html
