"""Results tables for notebooks: a :class:`pandas.DataFrame`, shown as an HTML table.

Every results table in the book goes through :func:`show`, so they all look alike: units in
the column names (``"ms / step"``, ``"top-1 (%)"``), numbers formatted per column, no index
column unless it means something, and a caption saying what the rows are. The DataFrame is
returned, so a notebook can keep computing with it or write it out (``df.to_csv``).
Command-line tools (``repro ledger``, benchmarks) keep their plain-text tables
(:func:`repro.bench.format_table`).

    df = repro.tables.show(rows, formats={"loss": "{:.4f}", "Δ (%)": "{:+.2f}"},
                           caption="last-50-step loss per precision")
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["frame", "show", "default_format", "style"]


def frame(rows: Any, columns: Sequence[str] | None = None):
    """A DataFrame from a list of dict rows (or anything ``pandas.DataFrame`` takes)."""
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        df = rows
    else:
        df = pd.DataFrame(list(rows) if not isinstance(rows, Mapping) else rows)
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise KeyError(f"columns {missing} are not in the table (it has {list(df.columns)})")
        df = df[list(columns)]
    return df


def default_format(value: Any) -> str:
    """Four significant digits for floats (no scientific notation between 1e-3 and 1e6),
    thousands separators for large integers, text as is."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
        return f"{value:.3g}"
    try:  # numpy scalars
        import numpy as np

        if isinstance(value, np.integer):
            return default_format(int(value))
        if isinstance(value, np.floating):
            return default_format(float(value))
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def style(df, formats: Mapping[str, str | Any] | None = None, *, caption: str | None = None,
          index: bool = False, precision: int | None = None):
    """A :class:`pandas.io.formats.style.Styler` with the book's number formats.

    ``formats`` maps a column to a format string (``"{:.2f}"``) or a callable; the other
    columns use :func:`default_format` (or ``precision`` decimals when given).
    """
    formats = dict(formats or {})
    unknown = [c for c in formats if c not in df.columns]
    if unknown:
        raise KeyError(f"formats name columns that are not in the table: {unknown}")
    if precision is not None:
        base = {c: (lambda v, p=precision: f"{v:.{p}f}" if isinstance(v, float) else
                    default_format(v)) for c in df.columns}
    else:
        base = dict.fromkeys(df.columns, default_format)
    base.update(formats)
    styler = df.style.format(base, na_rep="—")
    if not index:
        styler = styler.hide(axis="index")
    if caption:
        styler = styler.set_caption(caption)
    styler = styler.set_table_attributes('class="repro-table dataframe"')
    return styler


def _shown(df):
    """``df`` as a DataFrame that IPython does not display again when it is a cell's last
    value (it was just displayed, formatted); every operation on it gives a plain DataFrame."""
    import pandas as pd

    class ShownFrame(pd.DataFrame):
        def _ipython_display_(self) -> None:  # already shown by show()
            return None

    out = ShownFrame(df)
    return out


def show(rows: Any, formats: Mapping[str, str | Any] | None = None, *,
         caption: str | None = None, columns: Sequence[str] | None = None,
         index: bool = False, precision: int | None = None):
    """Display ``rows`` as an HTML results table and return the DataFrame.

    Outside IPython (a plain script) the table is printed as text instead. The returned frame
    is not displayed a second time when ``show(...)`` ends a notebook cell.
    """
    df = frame(rows, columns)
    styler = style(df, formats, caption=caption, index=index, precision=precision)
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is None:
            raise ImportError
        display(styler)
    except ImportError:
        if caption:
            print(caption)
        print(df.to_string(index=index))
    return _shown(df)
