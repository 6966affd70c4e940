"""Read a notebook's scales from its tagged parameter cells (CONTRACT §2-3).

Each notebook has

* a code cell tagged ``parameters``: the **ci** scale, papermill's defaults;
* optionally a cell tagged ``parameters-local`` (and ``skip-execution``): a laptop CPU,
  minutes;
* a cell tagged ``parameters-full`` (and ``skip-execution``): the paper's settings.

The local and full cells must carry ``skip-execution``: a cell that ran would reassign the
names after papermill's injected cell and silently undo the chosen scale.

Every cell holds only ``NAME = <literal>`` assignments (comments welcome). All scales define
the same names. :func:`read_scales` parses them with :mod:`ast` without executing anything, and
:func:`resolve_parameters` applies ``-p NAME VALUE`` overrides, refusing unknown names and
wrong types before a kernel starts.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ParameterError, ReproError

SCALES = ("ci", "local", "full")
TAGS = {"ci": "parameters", "local": "parameters-local", "full": "parameters-full"}


@dataclass
class NotebookScales:
    """The parameter sets of one notebook, keyed by scale name."""

    path: Path
    scales: dict[str, dict[str, Any]]
    comments: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.scales["ci"])

    def available(self) -> list[str]:
        return [s for s in SCALES if s in self.scales]


def read_notebook(path: str | Path):
    """Load a ``.py`` (py:percent) or ``.ipynb`` notebook as a NotebookNode."""
    path = Path(path)
    if not path.exists():
        raise ReproError(f"notebook not found: {path}. Check the path (notebooks live under "
                         "notebooks/<paper>/NN_<topic>.py)")
    if path.suffix not in (".py", ".ipynb"):
        raise ReproError(f"{path} is not a notebook: give a py:percent .py file or an .ipynb")
    import jupytext

    return jupytext.read(path, fmt="py:percent" if path.suffix == ".py" else None)


def _parse_cell(source: str, where: str) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ParameterError(f"{where}: cannot parse ({err.msg}, line {err.lineno})") from err
    values: dict[str, Any] = {}
    comments: dict[str, str] = {}
    lines = source.splitlines()
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise ParameterError(
                f"{where}, line {node.lineno}: only `NAME = literal` assignments are allowed "
                "in a parameters cell")
        name = node.targets[0].id
        try:
            values[name] = ast.literal_eval(node.value)
        except ValueError as err:
            raise ParameterError(
                f"{where}: the value of {name} is not a literal (numbers, strings, booleans, "
                "None, tuples, lists and dicts of these only)") from err
        line = lines[node.end_lineno - 1]
        if "#" in line:
            comments[name] = line.split("#", 1)[1].strip()
    return values, comments


def read_scales(path: str | Path) -> NotebookScales:
    """Parse the ci / local / full parameter cells of a notebook."""
    path = Path(path)
    nb = read_notebook(path)
    scales: dict[str, dict[str, Any]] = {}
    comments: dict[str, dict[str, str]] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        for scale, tag in TAGS.items():
            if tag in tags:
                if scale in scales:
                    raise ParameterError(f"{path}: more than one cell is tagged {tag!r}")
                if scale != "ci" and "skip-execution" not in tags:
                    raise ParameterError(
                        f"{path}: the cell tagged {tag!r} must also be tagged 'skip-execution'"
                        " (otherwise it runs after papermill's injected parameters and "
                        "overrides them)")
                scales[scale], comments[scale] = _parse_cell(cell.source, f"{path} [{tag}]")
    if "ci" not in scales:
        raise ParameterError(f"{path} has no cell tagged 'parameters' (the ci scale)")
    ci_names = set(scales["ci"])
    for scale, values in scales.items():
        if set(values) != ci_names:
            missing = sorted(ci_names - set(values))
            extra = sorted(set(values) - ci_names)
            raise ParameterError(
                f"{path}: the {scale!r} scale must define the same names as 'parameters'"
                f" (missing {missing}, extra {extra})")
    return NotebookScales(path, scales, comments)


def _type_name(value: Any) -> str:
    return type(value).__name__


def coerce_value(name: str, text: str | Any, default: Any) -> Any:
    """Parse a command-line value and check it against the type of the ci default."""
    value = text
    if isinstance(text, str):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word is a string
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
        value = type(default)(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ParameterError(
            f"parameter {name} expects a {_type_name(default)} (like {default!r}), "
            f"got {text!r}")
    return value


def resolve_parameters(scales: NotebookScales, scale: str,
                       overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """The full parameter dict for ``scale`` with ``overrides`` applied and validated."""
    if scale not in SCALES:
        raise ParameterError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}")
    if scale not in scales.scales:
        raise ParameterError(
            f"{scales.path} has no {scale!r} scale (a cell tagged {TAGS[scale]!r}); "
            f"available: {', '.join(scales.available())}")
    params = dict(scales.scales[scale])
    for name, text in (overrides or {}).items():
        if name not in params:
            raise ParameterError(
                f"unknown parameter {name!r} for {scales.path.name}; valid names: "
                f"{', '.join(scales.names)}")
        params[name] = coerce_value(name, text, scales.scales["ci"][name])
    return params


def format_table(scales: NotebookScales) -> str:
    """Side-by-side text table of every scale's values (``repro scales``)."""
    cols = scales.available()
    rows = [["name", *cols, "source (full)"]]
    for name in scales.names:
        rows.append([name, *(repr(scales.scales[c][name]) for c in cols),
                     scales.comments.get("full", {}).get(name, "")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for k, row in enumerate(rows):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
