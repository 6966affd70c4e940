"""Results tables: DataFrames with the book's number formats, shown as HTML."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from repro import tables


@pytest.mark.parametrize("value,text", [
    (0.123456, "0.1235"), (1234.56, "1235"), (12345.6, "12,346"), (3e-5, "3e-05"),
    (0.0, "0"), (12, "12"), (123456, "123,456"), (float("nan"), "—"), (math.inf, "∞"),
    (True, "True"), ("M0", "M0"),
])
def test_default_format_by_hand(value, text):
    assert tables.default_format(value) == text


def test_style_applies_column_formats_and_hides_the_index():
    df = pd.DataFrame([{"model": "M0", "top-1 (%)": 63.21, "ms / step": 1.23456}])
    html = tables.style(df, {"top-1 (%)": "{:.1f}"}, caption="two models").to_html()
    assert ">63.2<" in html and ">1.235<" in html and "two models" in html
    assert 'class="repro-table dataframe"' in html
    assert "row_heading" not in html  # no index column


def test_style_refuses_a_format_for_a_column_that_does_not_exist():
    with pytest.raises(KeyError, match=r"\['acc'\]"):
        tables.style(pd.DataFrame([{"a": 1}]), {"acc": "{:.1f}"})


def test_show_returns_the_frame_in_column_order_and_prints_outside_ipython(capsys):
    df = tables.show([{"b": 2.0, "a": 1}, {"b": 3.5, "a": 2}], columns=["a", "b"],
                     caption="cap")
    assert list(df.columns) == ["a", "b"] and df["b"].tolist() == [2.0, 3.5]
    out = capsys.readouterr().out
    assert out.startswith("cap\n") and "3.5" in out


def test_frame_names_missing_columns():
    with pytest.raises(KeyError, match="columns \\['c'\\] are not in the table"):
        tables.frame([{"a": 1}], columns=["a", "c"])


def test_a_cell_ending_in_show_displays_the_table_once(tmp_path):
    """show() returns the frame for further use, but IPython must not display it again when
    show(...) is the cell's last expression; a frame computed from it displays as usual."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import repro.tables\n"
                                          "repro.tables.show([{'a': 1.5}], caption='x')"),
                nbformat.v4.new_code_cell("df = repro.tables.show([{'a': 1.5}])\ndf * 2")]
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    first, second = ([o.output_type for o in c.outputs] for c in nb.cells)
    assert first == ["display_data"]
    assert second == ["display_data", "execute_result"]
