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
STATUS_CONTRADICTED = "contradicted at ci — needs full scale"
STATUS_FULL_OK = "reproduced at full"
#: every status, in the order the book lists them, with its colour class (book/_static/repro.css)
STATUSES = {
    STATUS_CI: "ok", STATUS_LOCAL: "ok", STATUS_FULL_OK: "ok",
    STATUS_CONTRADICTED: "contradicted", STATUS_NEEDS_LOCAL: "pending", STATUS_FULL: "pending",
    STATUS_GPU: "gpu", STATUS_FAILED: "failed", STATUS_MISSING: "failed",
}
CLAIM_SCALES = ("ci", "local", "full", "gpu")
CLAIM_FIELDS = ("id", "claim", "metric", "scale", "notebook", "paper_value", "source", "check",
                "reason")
CHAPTER_FIELDS = ("paper", "title", "citation", "claims")
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


def _did_you_mean(key: str, known: tuple[str, ...]) -> str:
    import difflib

    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _validate_check(check: Any, where: str) -> None:
    """Raise a one-line ReproError unless ``check`` is ``{op: OP, value: number}`` or
    ``{op: between, value: [lo, hi]}``."""
    if not isinstance(check, dict):
        raise ReproError(f"{where}, field 'check': expected a mapping like "
                         f'{{op: ">", value: 1.0}}, got {check!r}')
    for key in check:
        if key not in ("op", "value"):
            raise ReproError(f"{where}, field 'check': unknown key {key!r}"
                             f"{_did_you_mean(str(key), ('op', 'value'))}; a check has 'op' "
                             "and 'value'")
    op = check.get("op")
    if op not in (*OPS, "between"):
        raise ReproError(f"{where}, field 'check.op': {op!r} is not one of "
                         f"{', '.join([*OPS, 'between'])}")
    if "value" not in check:
        raise ReproError(f"{where}, field 'check.value': missing (the bound to compare with)")
    value = check["value"]
    if op == "between":
        if not (isinstance(value, (list, tuple)) and len(value) == 2
                and all(_is_number(v) for v in value)):
            raise ReproError(f"{where}, field 'check.value': 'between' needs two finite "
                             f"numbers [low, high], got {value!r}")
        if value[0] > value[1]:
            raise ReproError(f"{where}, field 'check.value': low {value[0]} is above high "
                             f"{value[1]}")
    elif not _is_number(value):
        raise ReproError(f"{where}, field 'check.value': {op!r} needs one finite number, "
                         f"got {value!r}")


def load_claims(path: str | Path) -> Chapter:
    """Read and validate one ``claims.yaml``; any problem is one line naming the file, the
    claim and the field."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        first = str(err).replace("\n", " ")
        raise ReproError(f"{path}: not valid YAML ({first})") from err
    except OSError as err:
        raise ReproError(f"{path}: cannot read the claims file ({err.strerror})") from err
    if not isinstance(doc, dict):
        raise ReproError(f"{path}: expected a mapping with 'paper', 'title', 'citation' and "
                         "'claims'")
    for key in doc:
        if key not in CHAPTER_FIELDS:
            raise ReproError(f"{path}: unknown top-level field {key!r}"
                             f"{_did_you_mean(str(key), CHAPTER_FIELDS)}")
    rows = doc.get("claims")
    if not isinstance(rows, list) or not rows:
        raise ReproError(f"{path}, field 'claims': expected a non-empty list of claims, got "
                         f"{rows!r}")
    claims = []
    seen = set()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ReproError(f"{path}, claim #{i + 1}: expected a mapping of fields, got {row!r}")
        cid = row.get("id")
        where = f"{path}, claim {cid!r}" if isinstance(cid, str) and cid else \
            f"{path}, claim #{i + 1}"
        for key in row:
            if key not in CLAIM_FIELDS:
                raise ReproError(f"{where}: unknown field {key!r}"
                                 f"{_did_you_mean(str(key), CLAIM_FIELDS)}")
        for key in ("id", "claim", "metric", "scale"):
            if key not in row or row[key] in (None, ""):
                raise ReproError(f"{where}, field {key!r}: missing")
        for key in ("id", "claim", "metric", "scale", "notebook", "source", "reason"):
            if key in row and row[key] is not None and not isinstance(row[key], str):
                raise ReproError(f"{where}, field {key!r}: expected text, got {row[key]!r}")
        if row["id"] in seen:
            raise ReproError(f"{where}, field 'id': duplicate id")
        seen.add(row["id"])
        if row["scale"] not in CLAIM_SCALES:
            raise ReproError(f"{where}, field 'scale': {row['scale']!r} is not one of "
                             f"{', '.join(CLAIM_SCALES)}")
        check = row.get("check")
        if check is not None:
            _validate_check(check, where)
        elif row["scale"] in ("ci", "local"):
            raise ReproError(f"{where}, field 'check': a {row['scale']} claim needs a check")
        if row["scale"] in ("full", "gpu") and not row.get("reason"):
            raise ReproError(f"{where}, field 'reason': a {row['scale']} claim needs a 'reason' "
                             "(why a CPU run at ci scale cannot show it)")
        claims.append(Claim(**{k: row.get(k) for k in Claim.__dataclass_fields__
                               if k in row}))
    return Chapter(doc.get("paper", path.parent.name), doc.get("title", ""),
                   doc.get("citation", ""), claims, path)


def is_finite_value(value: Any) -> bool:
    """False for NaN and ±inf, also as the strings ``record`` stores them as ("nan", "inf")."""
    if isinstance(value, str):
        return value.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity",
                                             "-infinity")
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(is_finite_value(v) for v in value)
    return True


def passes(check: dict[str, Any] | None, value: Any) -> bool | None:
    """Evaluate ``check`` on ``value``; None when there is nothing to check."""
    if check is None or value is None:
        return None
    if not is_finite_value(value):
        return False
    if isinstance(value, str) or isinstance(value, (list, tuple, dict)):
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
    """Status of every claim of ``chapter`` given the measurements of its notebooks.

    * A non-finite measurement (NaN, ±inf) fails, whatever the claim's scale.
    * ``ci`` / ``local`` claims: reproduced when the check holds, failed when not; a ci run
      may fall short of a ``local`` claim ("needs local scale").
    * ``full`` / ``gpu`` claims: a CPU run cannot settle them, so they stay "needs full scale"
      or "GPU only" — unless the notebook measured a value at a smaller scale and it goes
      *against* the paper's direction (the claim's check fails): then the status is
      "contradicted at ci — needs full scale", shown with the value and counted separately. A
      value measured at full scale is judged like any other ("reproduced at full" / failed).
    """
    by_id: dict[str, Measurement] = {}
    for m in measurements:
        by_id[m.claim] = m  # a later run wins
    rows = []
    for claim in chapter.claims:
        m = by_id.get(claim.id)
        ok = passes(claim.check, m.value) if m else None
        if m is not None and not is_finite_value(m.value):
            status, ok = STATUS_FAILED, False
        elif claim.scale in ("full", "gpu"):
            if m is not None and m.scale == "full" and ok is not None:
                status = STATUS_FULL_OK if ok else STATUS_FAILED
            elif m is not None and ok is False:
                status = STATUS_CONTRADICTED
            else:
                status = STATUS_GPU if claim.scale == "gpu" else STATUS_FULL
        elif m is None:
            status = STATUS_NEEDS_LOCAL if claim.scale == "local" else STATUS_MISSING
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


def _html(text: Any) -> str:
    """Escape ``text`` for HTML, keeping `code` spans as <code>."""
    import html
    import re

    escaped = html.escape(" ".join(str(text).split()), quote=False)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def status_class(status: str) -> str:
    """The CSS colour class of a status (the same colours on every page)."""
    return f"repro-status repro-status-{STATUSES.get(status, 'pending')}"


def summary_counts(rows: list[Row]) -> dict[str, int]:
    """``{status: count}`` in the book's status order, statuses with no rows left out."""
    counts = dict.fromkeys(STATUSES, 0)
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {k: v for k, v in counts.items() if v}


def summary_html(rows: list[Row]) -> str:
    """One line of coloured count badges for a chapter."""
    parts = [f'<span class="{status_class(s)}">{n} {_html(s)}</span>'
             for s, n in summary_counts(rows).items()]
    return f'<p class="repro-ledger-summary">{len(rows)} claims: ' + " ".join(parts) + "</p>"


def _measured_text(r: Row) -> str:
    if r.measurement is None:
        return "—"
    text = _fmt(r.measurement.value)
    if r.measurement.scale != "ci":
        text += f" ({r.measurement.scale})"
    return text


def table_html(rows: list[Row]) -> str:
    """The claim rows as one HTML table that wraps instead of scrolling sideways: the claim in
    the first column, its metric, source and reason folded under it."""
    out = ['<table class="repro-ledger">',
           '<colgroup><col class="c-claim"><col class="c-paper"><col class="c-measured">'
           '<col class="c-check"><col class="c-status"></colgroup>',
           "<thead><tr><th>claim</th><th>paper</th><th>measured</th><th>check</th>"
           "<th>status</th></tr></thead>", "<tbody>"]
    for r in rows:
        c = r.claim
        details = [f"<b>metric</b>: {_html(c.metric)}"]
        if c.source:
            details.append(f"<b>source</b>: {_html(c.source)}")
        if c.notebook:
            details.append(f"<b>notebook</b>: <code>{_html(c.notebook)}</code>")
        details.append(f"<b>scale</b>: {c.scale}")
        if c.reason:
            details.append(f"<b>why not at ci</b>: {_html(c.reason)}")
        if r.measurement is not None and r.measurement.context:
            ctx = ", ".join(f"{k}={_fmt(v)}" for k, v in r.measurement.context.items())
            details.append(f"<b>context</b>: {_html(ctx)}")
        out.append(
            f'<tr><td><code class="repro-claim-id">{_html(c.id)}</code> {_html(c.claim)}'
            f'<details><summary>metric, source, scale</summary>{"<br>".join(details)}'
            f"</details></td><td>{_html(_fmt(c.paper_value))}</td>"
            f"<td>{_html(_measured_text(r))}</td><td>{_html(_check_text(c.check))}</td>"
            f'<td><span class="{status_class(r.status)}">{_html(r.status)}</span></td></tr>')
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


STATUS_LEGEND = [
    (STATUS_CI, "the check held in the CI run"),
    (STATUS_LOCAL, "the check held at the `local` scale"),
    (STATUS_FULL_OK, "the check held in a full-scale run"),
    (STATUS_CONTRADICTED, "the paper's claim is about its full scale, and our small run measured "
                          "the opposite direction (the value is shown; it does not fail CI)"),
    (STATUS_NEEDS_LOCAL, "the ci run falls short; the `local` scale is where it should hold"),
    (STATUS_FULL, "a CPU run this small cannot show it; the reason is given"),
    (STATUS_GPU, "a speed or memory claim about GPUs"),
    (STATUS_FAILED, "the check did not hold, or the value was not finite"),
    (STATUS_MISSING, "a ci claim whose notebook recorded no value"),
]


def _anchor(paper: str) -> str:
    """The HTML id of a chapter's section on the status page (docutils turns ``_`` into ``-``)."""
    import re

    return "ledger-" + re.sub(r"[^a-z0-9]+", "-", paper.lower()).strip("-")


def status_markdown(rows_by_chapter: dict[str, list[Row]]) -> str:
    """The book's status page: an overview line per chapter, then every claim."""
    lines = [
        "# Claims ledger",
        "",
        "Every chapter lists the paper's headline claims, what our notebooks measured at the",
        "scale they ran in CI, and whether the check held. This page is generated by",
        "`repro ledger` from the executed notebooks shown in this book; nothing on it is typed",
        "by hand. Paper values are references, with their source (open a row's details).",
        "",
        '<dl class="repro-legend">',
        *(f'<dt><span class="{status_class(s)}">{_html(s)}</span></dt><dd>{_html(t)}</dd>'
          for s, t in STATUS_LEGEND),
        "</dl>",
        "",
        "## Overview",
        "",
        '<table class="repro-ledger-overview"><thead><tr><th>chapter</th><th>claims</th>'
        "</tr></thead><tbody>",
    ]
    for paper, rows in rows_by_chapter.items():
        title = rows[0].chapter.title if rows else paper
        lines.append(f'<tr><td><a href="#{_anchor(paper)}">{_html(title)}</a></td>'
                     f"<td>{summary_html(rows)}</td></tr>")
    lines += ["</tbody></table>", ""]
    for paper, rows in rows_by_chapter.items():
        chapter = rows[0].chapter if rows else None
        title = chapter.title if chapter else paper
        lines += [f"({_anchor(paper)})=", f"## {title}", ""]
        if chapter and chapter.citation:
            lines += [" ".join(chapter.citation.split()), ""]
        lines += [summary_html(rows), "", table_html(rows), ""]
    return "\n".join(lines)


def chapter_markdown(rows: list[Row]) -> str:
    """One chapter's ledger, as its chapter page includes it."""
    return "\n".join([summary_html(rows), "", table_html(rows), ""])


def build(executed_root: str | Path = "build/executed",
          notebooks_root: str | Path = "notebooks") -> dict[str, list[Row]]:
    """Evaluate every chapter's claims against the executed notebooks."""
    measured = collect(executed_root)
    return {ch.paper: evaluate(ch, measured.get(Path(ch.path).parent.name, []))
            for ch in discover_chapters(notebooks_root)}


def failures(rows_by_chapter: dict[str, list[Row]]) -> list[Row]:
    """Rows that fail CI: a failed check (any scale, NaN included) or a ci value never
    recorded. "Contradicted at ci" rows are reported but do not fail."""
    return [r for rows in rows_by_chapter.values() for r in rows
            if r.status == STATUS_FAILED or (r.claim.scale == "ci" and r.measurement is None)]


def find_chapter(claim_ids: list[str], claims_file: str | Path = "claims.yaml") -> Chapter | None:
    """The chapter whose claims these are: ``claims_file`` when it exists (a checkout, or
    ``repro run``), else the claims files shipped inside the package (a notebook run alone,
    on Colab or in an empty folder)."""
    if Path(claims_file).exists():
        return load_claims(claims_file)
    from .resources import claims_files

    wanted = set(claim_ids)
    for path in claims_files().values():
        chapter = load_claims(path)
        if wanted and wanted <= {c.id for c in chapter.claims}:
            return chapter
    return None


def chapter_claims(paper: str, claims_file: str | Path = "claims.yaml") -> Chapter:
    """A chapter's claims (for a notebook that reads the paper's values from them):
    ``claims_file`` when it exists (a checkout, or ``repro run``), else the copy shipped inside
    the package, so the notebook also runs alone in an empty folder."""
    if Path(claims_file).exists():
        return load_claims(claims_file)
    from .resources import claims_files

    files = claims_files()
    if paper not in files:
        raise ReproError(f"no claims file for chapter {paper!r} in {claims_file} or in the "
                         f"installed package (chapters: {', '.join(sorted(files)) or 'none'})")
    return load_claims(files[paper])


def show(paper: str | None = None, claims_file: str | Path = "claims.yaml"):
    """Display this notebook's recorded claims next to the paper's values (the Claims cell),
    as a results table; returns the DataFrame."""
    entries = recorded()
    if paper is not None and not Path(claims_file).exists():
        from .resources import claims_files

        files = claims_files()
        if paper in files:
            claims_file = files[paper]
    chapter = find_chapter([e["claim"] for e in entries], claims_file)
    by_id = {c.id: c for c in chapter.claims} if chapter else {}
    rows = []
    for e in entries:
        c = by_id.get(e["claim"])
        ok = passes(c.check, e["value"]) if c else None
        if c is not None and c.scale in ("full", "gpu"):
            holds = {True: "consistent (needs full scale)", False: "contradicted at ci",
                     None: "needs full scale"}[ok]
        else:
            holds = {True: "yes", False: "NO", None: "—"}[ok]
        rows.append({"claim": e["claim"],
                     "paper": _fmt(c.paper_value) if c else "—",
                     "source": c.source if c else "—",
                     "measured": _fmt(e["value"]),
                     "check": _check_text(c.check) if c else "—",
                     "scale": c.scale if c else "—",
                     "holds": holds})
    from .tables import show as show_table

    title = chapter.title if chapter else "this notebook"
    return show_table(rows, caption=f"Claims recorded by this notebook ({title})",
                      columns=["claim", "paper", "source", "measured", "check", "scale",
                               "holds"] if rows else None)


README_BEGIN = "<!-- ledger:begin -->"
README_END = "<!-- ledger:end -->"


def readme_block(rows_by_chapter: dict[str, list[Row]]) -> str:
    lines = ["| chapter | claims | reproduced | contradicted at ci | needs local / full scale, "
             "GPU only | failed |",
             "|---|---|---|---|---|---|"]
    for rows in rows_by_chapter.values():
        c = summary_counts(rows)
        title = rows[0].chapter.title if rows else "?"
        held = c.get(STATUS_CI, 0) + c.get(STATUS_LOCAL, 0) + c.get(STATUS_FULL_OK, 0)
        pending = c.get(STATUS_FULL, 0) + c.get(STATUS_GPU, 0) + c.get(STATUS_NEEDS_LOCAL, 0)
        failed = c.get(STATUS_FAILED, 0) + c.get(STATUS_MISSING, 0)
        lines.append(f"| {title} | {len(rows)} | {held} | {c.get(STATUS_CONTRADICTED, 0)} | "
                     f"{pending} | {failed} |")
    return "\n".join(lines)


def update_readme(readme: str | Path, rows_by_chapter: dict[str, list[Row]]) -> bool:
    """Rewrite the ledger block between the markers in README.md; True if it changed."""
    from .io import atomic_write_text

    path = Path(readme)
    text = path.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ReproError(f"{path} has no {README_BEGIN} ... {README_END} block")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_BEGIN}\n{readme_block(rows_by_chapter)}\n{README_END}{tail}"
    if new != text:
        atomic_write_text(path, new)
        return True
    return False
