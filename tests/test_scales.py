from __future__ import annotations

import pytest

from repro.errors import ParameterError
from repro.scales import coerce_value, format_table, read_scales, resolve_parameters


def test_reads_all_three_scales_with_literal_values(tiny_notebook):
    s = read_scales(tiny_notebook)
    assert s.available() == ["ci", "local", "full"]
    assert s.scales["ci"] == {"STEPS": 3, "LR": 0.5, "NAME": "tiny", "USE_BIAS": True}
    assert s.scales["full"]["STEPS"] == 3000
    assert s.comments["full"]["STEPS"] == "paper, Table 1"


def test_reads_the_same_scales_from_the_paired_ipynb(tiny_notebook):
    import jupytext

    ipynb = tiny_notebook.with_suffix(".ipynb")
    jupytext.write(jupytext.read(tiny_notebook), ipynb)
    assert read_scales(ipynb).scales == read_scales(tiny_notebook).scales


def test_overrides_are_typed_against_the_ci_defaults(tiny_notebook):
    s = read_scales(tiny_notebook)
    p = resolve_parameters(s, "full", {"STEPS": "7", "LR": "1", "USE_BIAS": "True"})
    assert p["STEPS"] == 7 and p["LR"] == 1.0 and isinstance(p["LR"], float)
    assert p["NAME"] == "full"  # untouched values come from the chosen scale


@pytest.mark.parametrize("name,value,expected", [
    ("STEPS", "3.5", "expects a int"), ("USE_BIAS", "1", "expects a bool"),
    ("LR", "'fast'", "expects a float"), ("STEPS", "True", "expects a int"),
])
def test_wrong_type_is_refused_with_the_expected_type(tiny_notebook, name, value, expected):
    with pytest.raises(ParameterError, match=expected):
        resolve_parameters(read_scales(tiny_notebook), "ci", {name: value})


def test_unknown_parameter_lists_the_valid_names(tiny_notebook):
    with pytest.raises(ParameterError, match="valid names: STEPS, LR, NAME, USE_BIAS"):
        resolve_parameters(read_scales(tiny_notebook), "ci", {"STPES": "5"})


def test_unknown_scale_is_refused(tiny_notebook):
    with pytest.raises(ParameterError, match="choose one of ci, local, full"):
        resolve_parameters(read_scales(tiny_notebook), "huge")


def test_scale_missing_from_notebook_says_which_exist(tiny_notebook):
    text = tiny_notebook.read_text()
    start = text.index('# %% tags=["parameters-local", "skip-execution"]')
    end = text.index('# %% tags=["parameters-full"')
    tiny_notebook.write_text(text[:start] + text[end:])
    with pytest.raises(ParameterError, match="available: ci, full"):
        resolve_parameters(read_scales(tiny_notebook), "local")


def test_scales_must_define_the_same_names(tiny_notebook):
    tiny_notebook.write_text(tiny_notebook.read_text().replace("STEPS = 3000", "STEPZ = 3000"))
    with pytest.raises(ParameterError, match="missing \\['STEPS'\\], extra \\['STEPZ'\\]"):
        read_scales(tiny_notebook)


def test_non_literal_parameter_is_refused(tiny_notebook):
    tiny_notebook.write_text(tiny_notebook.read_text().replace("STEPS = 3  # ci",
                                                               "STEPS = len('abc')"))
    with pytest.raises(ParameterError, match="not a literal"):
        read_scales(tiny_notebook)


def test_bare_word_is_a_string_and_ints_widen_to_float():
    assert coerce_value("NAME", "hello", "x") == "hello"
    assert coerce_value("LR", "2", 0.1) == 2.0


def test_format_table_shows_every_scale_and_the_source(tiny_notebook):
    table = format_table(read_scales(tiny_notebook))
    assert "ci" in table and "local" in table and "full" in table
    assert "paper, Table 1" in table


def test_local_and_full_cells_must_skip_execution(tiny_notebook):
    tiny_notebook.write_text(tiny_notebook.read_text().replace(
        '"parameters-full", "skip-execution"', '"parameters-full"'))
    with pytest.raises(ParameterError, match="must also be tagged 'skip-execution'"):
        read_scales(tiny_notebook)
