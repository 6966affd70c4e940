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

Type rule for ``-p NAME VALUE`` (:func:`coerce_value`): ``VALUE`` is read as a Python literal
(a bare word that is not one is a string) and must have the type of the ci default, element by
element: an int is accepted for a float, a list for a tuple; a list (or a tuple) whose default
elements share one type takes only elements of that type, a tuple of mixed types is a record
checked position by position, and dict keys and values are checked the same way. Floats must be
finite (``1e999`` reads as inf and is refused). ``None`` is accepted only where the ci default
is ``None``. Such a parameter takes any literal, unless its line in the ``parameters`` cell
declares what it accepts with a comment::

    RESUME = None  # accepts: str
    LIMIT = None  # accepts: int | float

(types: bool, int, float, str, list, tuple, dict).
"""

from __future__ import annotations

import ast
import math
import re
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
    for name, value in scales["ci"].items():
        types = declared_types(comments["ci"].get(name))
        if value is None and types and not set(types) <= set(_PROTOTYPES):
            raise ParameterError(
                f"{path} [parameters]: {name}'s `# accepts:` comment names "
                f"{', '.join(t for t in types if t not in _PROTOTYPES)}; use "
                f"{', '.join(_PROTOTYPES)} (joined with |)")
    return NotebookScales(path, scales, comments)


_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list",
               tuple: "tuple", dict: "dict"}
#: a prototype value for each type a ``None`` default may declare with ``# accepts: TYPE``
_PROTOTYPES: dict[str, Any] = {"bool": False, "int": 0, "float": 0.0, "str": "", "list": [],
                               "tuple": (), "dict": {}}
_ACCEPTS = re.compile(r"accepts:\s*([A-Za-z]+(?:\s*\|\s*[A-Za-z]+)*)")


def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _element_default(values: list[Any]) -> tuple[bool, Any]:
    """``(True, prototype)`` when every element of a default container has one type (ints
    among floats count as floats), else ``(False, None)``."""
    if not values:
        return False, None
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and any(
            isinstance(v, float) for v in values):
        return True, next(v for v in values if isinstance(v, float))
    first = type(values[0])
    if all(type(v) is first for v in values):
        return True, values[0]
    return False, None


def describe(default: Any) -> str:
    """What a parameter with this default accepts, in words: ``an int``, ``a list of float``,
    ``a tuple (int, str)``, ``a dict of str to int``."""
    kind = _TYPE_NAMES.get(type(default))
    if kind is None:
        return _article(type(default).__name__)
    if isinstance(default, (list, tuple)):
        same, element = _element_default(list(default))
        if same:
            inner = describe(element).split(" ", 1)[1]
            return f"{_article(kind)} of {inner}"
        if isinstance(default, tuple) and default:
            return f"a tuple ({', '.join(describe(v).split(' ', 1)[1] for v in default)})"
        return _article(kind)
    if isinstance(default, dict):
        same_k, key = _element_default(list(default))
        same_v, value = _element_default(list(default.values()))
        if same_k and same_v:
            return (f"a dict of {describe(key).split(' ', 1)[1]} to "
                    f"{describe(value).split(' ', 1)[1]}")
        return "a dict"
    return _article(kind)


class _Mismatch(Exception):
    def __init__(self, where: str, got: Any, wanted: Any) -> None:
        super().__init__(where)
        self.where, self.got, self.wanted = where, got, wanted


def _check(value: Any, default: Any, where: str = "") -> Any:
    """``value`` converted to the type of ``default`` (ints widen to float, lists and tuples
    take the default's kind), checked element by element; raises :class:`_Mismatch`."""
    if default is None:  # an element whose default is None: any literal (None included)
        return _free(value, where)
    if value is None:  # None only where the default itself is None
        raise _Mismatch(where, value, default)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):
                raise _Mismatch(where, value, default)
            return number
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            same, element = _element_default(list(default))
            if same:
                items = [_check(v, element, f"{where}[{i}]") for i, v in enumerate(value)]
            elif isinstance(default, tuple) and default:  # a record: position by position
                if len(value) != len(default):
                    raise _Mismatch(where, value, default)
                items = [_check(v, d, f"{where}[{i}]")
                         for i, (v, d) in enumerate(zip(value, default))]
            else:  # an empty or mixed default says nothing about the elements
                items = [_free(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return type(default)(items)
    elif isinstance(default, dict):
        if isinstance(value, dict):
            same_k, key = _element_default(list(default))
            same_v, val = _element_default(list(default.values()))
            return {(_check(k, key, f"{where} key {k!r}") if same_k else _free(k, where)):
                    (_check(v, val, f"{where}[{k!r}]") if same_v else _free(v, where))
                    for k, v in value.items()}
    elif isinstance(value, type(default)):
        return value
    raise _Mismatch(where, value, default)


def _free(value: Any, where: str) -> Any:
    """A value no default constrains: any literal, but never a non-finite float."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _Mismatch(where, value, 0.0)
    if isinstance(value, (list, tuple)):
        return type(value)(_free(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, dict):
        return {_free(k, where): _free(v, f"{where}[{k!r}]") for k, v in value.items()}
    return value


def declared_types(comment: str | None) -> list[str] | None:
    """The types a ``None`` default declares with ``# accepts: int`` (or ``int | str``);
    None when the comment declares nothing (any literal is accepted then)."""
    match = _ACCEPTS.search(comment or "")
    if not match:
        return None
    return [t.strip() for t in match.group(1).split("|")]


def cli_example(name: str, value: Any) -> str:
    """``-p NAME VALUE`` as a user would type it in a POSIX shell to pass ``value``."""
    if isinstance(value, str):
        plain = re.fullmatch(r"[A-Za-z_][\w./-]*", value) and value not in (
            "True", "False", "None")
        if plain:
            return f"-p {name} {value}"
        return f"-p {name} '{value!r}'" if "'" not in repr(value) else f"-p {name} {value!r}"
    text = repr(value)
    if re.fullmatch(r"[\w.+-]+", text):
        return f"-p {name} {text}"
    return f"-p {name} '{text}'" if "'" not in text else f'-p {name} "{text}"'


def coerce_value(name: str, text: str | Any, default: Any, accepts: str | None = None) -> Any:
    """Parse a command-line value and check it against the ci default, element by element.

    ``text`` is read as a Python literal; a bare word that is not one is a string. The value
    must have the default's type (an int is accepted for a float, a list for a tuple); list,
    tuple and dict elements are checked against the default's elements. Floats must be finite
    (``1e999`` reads as inf and is refused). ``None`` is accepted only where the default is
    ``None``; such a parameter takes any literal unless its comment in the ``parameters`` cell
    declares the types it accepts (``# accepts: int`` or ``# accepts: int | str``); ``accepts``
    is that comment.
    """
    value = text
    if isinstance(text, str):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = text  # a bare word is a string
    shown = text if isinstance(text, str) else repr(text)
    if default is None:
        return _coerce_declared(name, value, shown, declared_types(accepts))
    try:
        return _check(value, default)
    except _Mismatch as err:
        raise ParameterError(_mismatch_message(name, default, shown, err)) from None


def _coerce_declared(name: str, value: Any, shown: str, types: list[str] | None) -> Any:
    if value is None:
        return None
    if types is None:
        try:
            return _free(value, "")
        except _Mismatch:
            raise ParameterError(f"parameter {name} must be finite, got {shown!r}") from None
    for kind in types:
        try:
            return _check(value, _PROTOTYPES[kind])
        except _Mismatch:
            continue
    wanted = " or ".join(_article(t) for t in types)
    message = (f"parameter {name} expects None or {wanted} (its `# accepts:` comment), e.g. "
               f"{cli_example(name, _EXAMPLES[types[0]])}; got {shown!r}")
    if "str" in types and not isinstance(value, str):
        message += f"; to pass the text {shown}, quote it: -p {name} '\"{shown}\"'"
    raise ParameterError(message)


_EXAMPLES: dict[str, Any] = {"bool": True, "int": 1, "float": 0.5, "str": "text",
                             "list": [1, 2], "tuple": (1, 2), "dict": {"a": 1}}


def _mismatch_message(name: str, default: Any, shown: str, err: _Mismatch) -> str:
    head = (f"parameter {name} expects {describe(default)}, e.g. {cli_example(name, default)};"
            f" got {shown!r}")
    got, wanted = err.got, err.wanted
    where = f"element {err.where} is {got!r}: " if err.where else ""
    if got is None:
        return f"{head}: {where}None is accepted only where the ci default is None"
    if isinstance(wanted, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return f"{head}: {where}not a finite number (1e999 reads as inf)"
    if isinstance(wanted, tuple) and isinstance(got, (list, tuple)) and len(got) != len(wanted):
        return f"{head}: {where}needs {len(wanted)} elements, not {len(got)}"
    if isinstance(wanted, str) and not isinstance(got, str) and not err.where:
        return (f"{head}, which reads as {_article(_TYPE_NAMES.get(type(got), 'value'))}; "
                f"to pass the text {shown}, quote it: -p {name} '\"{shown}\"'")
    if err.where:
        return f"{head}: {where}not {describe(wanted)}"
    return head


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
        params[name] = coerce_value(name, text, scales.scales["ci"][name],
                                    scales.comments.get("ci", {}).get(name))
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
