"""The claims ledger: what each paper claims, what we measured, and whether it held (CONTRACT §4).

Inside a notebook, :func:`record` stores a measured value as a display output with an
``application/json`` bundle and ``metadata["repro"]["claim"]``; the value travels inside the
executed notebook. ``repro ledger`` then reads the executed notebooks (:func:`collect`), the
chapters' ``claims.yaml`` files (:func:`load_claims`), evaluates every check
(:func:`evaluate`) and writes the book's status page (:func:`status_markdown`).

A ``claims.yaml`` row::

    - id: m5_cpu_faster_than_mnv3_large
      claim: EfficientViT-M5 runs faster than MobileNetV3-Large on one CPU thread.
      paper_value: 1.45            # the paper's number, a reference only
      source: "README model zoo; abstract (+45.2% CPU)"
      metric: CPU throughput ratio M5 / MobileNetV3-Large (1 thread, batch 16, 224²)
      notebook: 01_architecture    # which notebook records it
      check: {op: ">", value: 1.0} # what the measured value must satisfy
      scale: ci                    # ci | local | full | gpu: the scale at which the check holds
      reason: ...                  # for full / gpu rows: why a CPU run cannot show it
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ReproError

STATUS_CI = "reproduced at ci"
STATUS_LOCAL = "reproduced at local"
STATUS_FULL = "needs full scale"
STATUS_GPU = "GPU only"
STATUS_FAILED = "failed"
STATUS_MISSING = "not recorded"
STATUS_NEEDS_LOCAL = "needs local scale"
CLAIM_SCALES = ("ci", "local", "full", "gpu")
OPS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
       "<=": lambda a, b: a <= b}
MIME = "application/json"

_RECORDED: list[dict[str, Any]] = []  # values recorded in this kernel, for show()


# --------------------------------------------------------------------------- recording
def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def record(claim_id: str, value: float, **context: Any) -> None:
    """Record the measured ``value`` of ``claim_id`` in the running notebook.

    ``context`` (units, sizes, seeds) is kept beside the value. When a ``claims.yaml`` sits in
    the working directory (as it does under ``repro run``), an unknown id is an error, so a
    typo cannot silently drop a claim.
    """
    here = Path("claims.yaml")
    if here.exists():
        known = {c.id for c in load_claims(here).claims}
        if claim_id not in known:
            raise ReproError(f"unknown claim id {claim_id!r}; claims.yaml lists: "
                             f"{', '.join(sorted(known))}")
    entry = {"claim": claim_id, "value": _jsonable(value), "context": _jsonable(context)}
    _RECORDED.append(entry)
    try:
        from IPython.display import display

        text = f"recorded claim `{claim_id}` = {_fmt(entry['value'])}"
        if context:
            text += " (" + ", ".join(f"{k}={_fmt(v)}" for k, v in entry["context"].items()) + ")"
        display({MIME: entry, "text/markdown": text, "text/plain": text}, raw=True,
                metadata={"repro": {"claim": claim_id}})
    except ImportError:  # plain Python: keep it in memory only
        pass


def recorded() -> list[dict[str, Any]]:
    """Values recorded so far in this process."""
    return list(_RECORDED)


# --------------------------------------------------------------------------- claims files
@dataclass
class Claim:
    id: str
    claim: str
    metric: str
    scale: str
    notebook: str | None = None
    paper_value: Any = None
    source: str = ""
    check: dict[str, Any] | None = None
    reason: str = ""


@dataclass
class Chapter:
    paper: str
    title: str
    citation: str
    claims: list[Claim] = field(default_factory=list)
    path: Path | None = None


def load_claims(path: str | Path) -> Chapter:
    """Read and validate one ``claims.yaml``."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ReproError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(doc, dict) or "claims" not in doc:
        raise ReproError(f"{path}: expected a mapping with 'paper', 'title' and 'claims'")
    claims = []
    seen = set()
    for i, row in enumerate(doc["claims"]):
        where = f"{path}, claim #{i + 1}"
        for key in ("id", "claim", "metric", "scale"):
            if key not in row:
                raise ReproError(f"{where}: missing field {key!r}")
        if row["id"] in seen:
            raise ReproError(f"{where}: duplicate id {row['id']!r}")
        seen.add(row["id"])
        if row["scale"] not in CLAIM_SCALES:
            raise ReproError(f"{where}: scale must be one of {CLAIM_SCALES}")
        check = row.get("check")
        if check is not None:
            if check.get("op") not in (*OPS, "between"):
                raise ReproError(f"{where}: check.op must be one of {[*OPS, 'between']}")
        elif row["scale"] in ("ci", "local"):
            raise ReproError(f"{where}: a {row['scale']} claim needs a check")
        if row["scale"] in ("full", "gpu") and not row.get("reason"):
            raise ReproError(f"{where}: a {row['scale']} claim needs a 'reason' "
                             "(why a CPU run at ci scale cannot show it)")
        claims.append(Claim(**{k: row.get(k) for k in Claim.__dataclass_fields__
                               if k in row}))
    return Chapter(doc.get("paper", path.parent.name), doc.get("title", ""),
                   doc.get("citation", ""), claims, path)


def passes(check: dict[str, Any] | None, value: Any) -> bool | None:
    """Evaluate ``check`` on ``value``; None when there is nothing to check."""
    if check is None or value is None or isinstance(value, str):
        return None
    if check["op"] == "between":
        lo, hi = check["value"]
        return lo <= value <= hi
    return OPS[check["op"]](value, check["value"])


# --------------------------------------------------------------------------- collecting
@dataclass
class Measurement:
    claim: str
    value: Any
    context: dict[str, Any]
    notebook: str
    scale: str


def read_executed(path: str | Path) -> list[Measurement]:
    """The recorded claims of one executed notebook, tagged with its scale."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    scale = nb.metadata.get("repro", {}).get("scale", "ci")
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("repro", {})
            data = out.get("data", {})
            if "claim" in meta and MIME in data:
                entry = data[MIME]
                if isinstance(entry, str):
                    entry = json.loads(entry)
                found.append(Measurement(entry["claim"], entry["value"],
                                         entry.get("context", {}), Path(path).stem, scale))
    return found


def collect(executed_root: str | Path) -> dict[str, list[Measurement]]:
    """``{paper: [Measurement, ...]}`` from ``executed_root/<paper>/*.ipynb``."""
    root = Path(executed_root)
    out: dict[str, list[Measurement]] = {}
    for nb in sorted(root.glob("*/*.ipynb")):
        if nb.name.startswith(".") or nb.name.endswith(".failed.ipynb"):
            continue
        out.setdefault(nb.parent.name, []).extend(read_executed(nb))
    return out


@dataclass
class Row:
    chapter: Chapter
    claim: Claim
    measurement: Measurement | None
    status: str
    ok: bool | None


def evaluate(chapter: Chapter, measurements: list[Measurement]) -> list[Row]:
    """Status of every claim of ``chapter`` given the measurements of its notebooks."""
    by_id: dict[str, Measurement] = {}
    for m in measurements:
        by_id[m.claim] = m  # a later run wins
    rows = []
    for claim in chapter.claims:
        m = by_id.get(claim.id)
        ok = passes(claim.check, m.value) if m else None
        if claim.scale == "gpu":
            status = STATUS_GPU
        elif claim.scale == "full":
            status = STATUS_FULL
        elif m is None:
            status = STATUS_MISSING
        elif ok:
            status = STATUS_CI if m.scale == "ci" else STATUS_LOCAL
        elif claim.scale == "local" and m.scale == "ci":
            status = STATUS_NEEDS_LOCAL  # a ci run is allowed to fall short of a local claim
        else:
            status = STATUS_FAILED
        rows.append(Row(chapter, claim, m, status, ok))
    return rows


def discover_chapters(notebooks_root: str | Path = "notebooks") -> list[Chapter]:
    return [load_claims(p) for p in sorted(Path(notebooks_root).glob("*/claims.yaml"))]


# --------------------------------------------------------------------------- reporting
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "—"
    return str(value)


def _check_text(check: dict[str, Any] | None) -> str:
    if not check:
        return "—"
    if check["op"] == "between":
        return f"in [{_fmt(check['value'][0])}, {_fmt(check['value'][1])}]"
    return f"{check['op']} {_fmt(check['value'])}"


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def status_markdown(rows_by_chapter: dict[str, list[Row]]) -> str:
    """The book's status page: one table per chapter."""
    lines = [
        "# Claims ledger",
        "",
        "Every chapter lists the paper's headline claims, what our notebooks measured at the",
        "scale they ran in CI, and whether the check held. This page is generated by",
        "`repro ledger` from the executed notebooks shown in this book; nothing on it is typed",
        "by hand. Paper values are references, with their source.",
        "",
        "Statuses: **reproduced at ci** (the check held in the CI run),",
        "**reproduced at local** (held at the `local` scale), **needs full scale** (a CPU run",
        "this small cannot show it; the reason is given), **GPU only** (a speed or memory claim",
        "about GPUs), **failed** (the check did not hold).",
        "",
    ]
    for paper, rows in rows_by_chapter.items():
        chapter = rows[0].chapter if rows else None
        title = chapter.title if chapter else paper
        lines += [f"## {title}", ""]
        if chapter and chapter.citation:
            lines += [chapter.citation, ""]
        counts = summary_counts(rows)
        lines += [", ".join(f"{n} {s}" for s, n in counts.items()), ""]
        lines += ["| claim | metric | paper (source) | measured | check | scale | status |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            measured = _fmt(r.measurement.value) if r.measurement else "—"
            if r.measurement and r.measurement.scale != "ci":
                measured += f" ({r.measurement.scale})"
            note = f" — {r.claim.reason}" if r.claim.reason else ""
            lines.append(
                f"| **{_md(r.claim.id)}**: {_md(r.claim.claim)}{_md(note)} | {_md(r.claim.metric)}"
                f" | {_md(_fmt(r.claim.paper_value))} ({_md(r.claim.source)}) | {_md(measured)}"
                f" | {_md(_check_text(r.claim.check))} | {r.claim.scale} | {r.status} |")
        lines.append("")
    return "\n".join(lines)


def summary_counts(rows: list[Row]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def build(executed_root: str | Path = "build/executed",
          notebooks_root: str | Path = "notebooks") -> dict[str, list[Row]]:
    """Evaluate every chapter's claims against the executed notebooks."""
    measured = collect(executed_root)
    return {ch.paper: evaluate(ch, measured.get(Path(ch.path).parent.name, []))
            for ch in discover_chapters(notebooks_root)}


def failures(rows_by_chapter: dict[str, list[Row]]) -> list[Row]:
    """Rows whose ci/local check failed or whose ci value was never recorded."""
    return [r for rows in rows_by_chapter.values() for r in rows
            if r.status == STATUS_FAILED or (r.claim.scale == "ci" and r.measurement is None)]


def show(paper: str | None = None, claims_file: str | Path = "claims.yaml") -> None:
    """Display this notebook's recorded claims next to the paper's values (the Claims cell)."""
    entries = recorded()
    chapter = load_claims(claims_file) if Path(claims_file).exists() else None
    rows = ["| claim | paper (source) | measured | check | scale | holds |",
            "|---|---|---|---|---|---|"]
    by_id = {c.id: c for c in chapter.claims} if chapter else {}
    for e in entries:
        c = by_id.get(e["claim"])
        ok = passes(c.check, e["value"]) if c else None
        holds = {True: "yes", False: "**no**", None: "—"}[ok]
        paper = f"{_fmt(c.paper_value)} ({_md(c.source)})" if c else "—"
        rows.append(f"| {e['claim']} | {paper} | {_fmt(e['value'])} | "
                    f"{_check_text(c.check) if c else '—'} | {c.scale if c else '—'} | {holds} |")
    text = "\n".join(rows)
    try:
        from IPython.display import Markdown, display

        display(Markdown(text))
    except ImportError:
        print(text)


README_BEGIN = "<!-- ledger:begin -->"
README_END = "<!-- ledger:end -->"


def readme_block(rows_by_chapter: dict[str, list[Row]]) -> str:
    lines = ["| chapter | claims | reproduced at ci | needs full scale / GPU only | failed |",
             "|---|---|---|---|---|"]
    for rows in rows_by_chapter.values():
        c = summary_counts(rows)
        title = rows[0].chapter.title if rows else "?"
        lines.append(f"| {title} | {len(rows)} | {c.get(STATUS_CI, 0)} | "
                     f"{c.get(STATUS_FULL, 0) + c.get(STATUS_GPU, 0)} | "
                     f"{c.get(STATUS_FAILED, 0) + c.get(STATUS_MISSING, 0)} |")
    return "\n".join(lines)


def update_readme(readme: str | Path, rows_by_chapter: dict[str, list[Row]]) -> bool:
    """Rewrite the ledger block between the markers in README.md; True if it changed."""
    path = Path(readme)
    text = path.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ReproError(f"{path} has no {README_BEGIN} ... {README_END} block")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_BEGIN}\n{readme_block(rows_by_chapter)}\n{README_END}{tail}"
    if new != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(new)
        tmp.replace(path)
        return True
    return False
