"""Build the book: execute once, use twice (CONTRACT §7).

1. Every notebook is executed at a scale with :func:`repro.execute.run_notebook` into
   ``build/executed/<paper>/`` — unless a run of the same source text at the same scale is
   already there (the test session leaves exactly those runs behind).
2. ``book/`` is copied to ``build/book_src/`` and the executed notebooks are staged at their
   repository paths (``notebooks/<paper>/NN_x.ipynb``), so Colab buttons point at the committed
   paired ``.ipynb``; the ledger's status page and benchmark tables are generated beside them.
3. Jupyter Book 1 builds HTML with ``execute_notebooks: off`` and ``-W -n --keep-going``:
   the book shows exactly the outputs that were checked.

Staging adds reading aids to the staged copies, never to the outputs: a label over each scale
cell (**ci — what this page ran**, **local**, **full — the paper's settings**), one table of
``parameter | ci | local | full | source`` built from :mod:`repro.scales`, a note on the
parameters papermill injected (visible when a rerun overrode some), the Colab badge as a local
image (the book loads nothing from the internet), and each chapter's ledger table
(``_generated/ledger_<paper>.md``) for its chapter page.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .errors import ReproError
from .io import atomic_write_text

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
        meta = dict(doc.get("meta", {}))
        for key in ("config", "machine", "torch"):  # other scripts' run descriptions
            if key in doc and not isinstance(doc[key], (list, dict)):
                meta[key] = doc[key]
            elif isinstance(doc.get(key), dict):
                meta.update({k: v for k, v in doc[key].items() if k not in ("out",)})
        caption = ", ".join(f"{k}: {v}" for k, v in meta.items())
        tables[path.stem] = "\n".join(md) + (f"\n\n*Measured with* `{doc.get('command', '')}`"
                                             f" — {caption}\n" if caption else "\n")
        _ = format_table  # same numbers as the script prints
    return tables


COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_BADGE = "/_static/colab-badge.svg"
SCALE_LABELS = {
    "ci": ("ci", "the CI machine: one CPU thread, about a minute"),
    "local": ("local", "a laptop CPU, minutes"),
    "full": ("full", "the paper's settings, on GPUs"),
}


def _label_cell(scale: str, ran: str):
    import nbformat

    name, what = SCALE_LABELS[scale]
    state = "what this page ran" if scale == ran else "not run on this page"
    html = (f'<p class="repro-scale-label repro-scale-{scale}"><span>{name}</span> '
            f"{what} — <b>{state}</b></p>")
    return nbformat.v4.new_markdown_cell(html, metadata={"tags": ["repro-scale-label"]})


def _scales_table_cell(path: Path, ran: str):
    import html

    import nbformat

    from .scales import SCALES, read_scales

    sc = read_scales(path)
    head = "".join(f"<th>{s}{' (this page)' if s == ran else ''}</th>" for s in SCALES)
    rows = []
    for name in sc.names:
        cells = "".join(
            f"<td><code>{html.escape(repr(sc.scales[s][name]))}</code></td>" if s in sc.scales
            else "<td>—</td>" for s in SCALES)
        source = sc.comments.get("full", {}).get(name, "")
        rows.append(f"<tr><td><code>{name}</code></td>{cells}<td>{html.escape(source)}</td>"
                    "</tr>")
    table = ('<table class="repro-scales"><thead><tr><th>parameter</th>' + head +
             "<th>source (full)</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    text = ('<details class="repro-scales"><summary><b>Scales</b>: this page ran at '
            f"<b>{ran}</b>; the three cells below hold the ci, local and full values "
            f"({len(sc.names)} parameters, side by side here). "
            "<code>repro run NOTEBOOK --scale local</code> (or <code>full</code>) reruns it at "
            "another.</summary>\n" + table + "</details>")
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": ["repro-scales-table"]})


def _injected_note(meta: dict):
    import nbformat

    overrides = meta.get("overrides") or {}
    scale = meta.get("scale", "ci")
    if overrides:
        names = ", ".join(f"`{k}`" for k in overrides)
        text = (f'<p class="repro-scale-label repro-scale-injected"><span>injected</span> '
                f"this run overrode {names} (scale {scale}); the cell below shows the values "
                "it used</p>")
    else:
        text = (f'<p class="repro-scale-label repro-scale-injected"><span>injected</span> '
                f"papermill injected the {scale} values unchanged (folded below)</p>")
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": ["repro-scale-label"]})


def annotate(nb_path: Path, source: Path | None) -> None:
    """Add the reading aids to a staged executed notebook, in place."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    meta = nb.metadata.get("repro", {})
    ran = meta.get("scale", "ci")
    cells = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "markdown" and COLAB_BADGE in cell.source:
            cell.source = cell.source.replace(COLAB_BADGE, LOCAL_BADGE)
        if cell.cell_type == "code" and "parameters" in tags:
            if source is not None and source.exists():
                cells.append(_scales_table_cell(source, ran))
            cells.append(_label_cell("ci", ran))
        elif cell.cell_type == "code" and "injected-parameters" in tags:
            cells.append(_injected_note(meta))
            if meta.get("overrides") and "hide-input" in tags:
                tags.remove("hide-input")  # a rerun's own values stay in view
        elif cell.cell_type == "code" and "parameters-local" in tags:
            cells.append(_label_cell("local", ran))
        elif cell.cell_type == "code" and "parameters-full" in tags:
            cells.append(_label_cell("full", ran))
        cells.append(cell)
    nb.cells = cells
    atomic_write_text(nb_path, nbformat.writes(nb))


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
        annotate(dest, root / "notebooks" / nb.parent.name / (nb.stem + ".py"))
    rows = ledger.build(executed, root / "notebooks")
    atomic_write_text(staging / "status.md", ledger.status_markdown(rows))
    (staging / "_generated").mkdir(exist_ok=True)
    for paper, chapter_rows in rows.items():
        folder = Path(chapter_rows[0].chapter.path).parent.name if chapter_rows else paper
        atomic_write_text(staging / "_generated" / f"ledger_{folder}.md",
                          ledger.chapter_markdown(chapter_rows))
        page = staging / folder / "index.md"
        if page.exists() and f"ledger_{folder}.md" not in page.read_text():
            # every chapter page ends with its own ledger, shown as on the status page
            atomic_write_text(page, page.read_text() + (
                "\n\n## Claims ledger\n\nWhat this chapter's notebooks measured at the scale "
                "shown in this book, claim by claim (all chapters: [the claims ledger]"
                "(../status.md)).\n\n"
                f"```{{include}} ../_generated/ledger_{folder}.md\n```\n"))
    for name, table in benchmark_tables(root).items():
        (staging / "_generated").mkdir(exist_ok=True)
        atomic_write_text(staging / "_generated" / f"{name}.md", table)
    return staging


def build(root: Path | None = None, scale: str = "ci", force: bool = False,
          execute: bool = True) -> Path:
    """Execute what is stale (unless ``execute=False``: stage the executed notebooks already
    in ``build/executed``), stage, and build the HTML."""
    root = root or ROOT
    if not (root / "book" / "_toc.yml").exists():
        raise ReproError(f"no book/_toc.yml under {root}: run from the repository root")
    executed = root / "build" / "executed"
    t0 = time.perf_counter()
    if execute:
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
