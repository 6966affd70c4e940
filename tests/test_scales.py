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
    ("STEPS", "3.5", "expects an int, e.g. -p STEPS 3; got '3.5'"),
    ("USE_BIAS", "1", "expects a bool, e.g. -p USE_BIAS True; got '1'"),
    ("LR", "'fast'", "expects a float, e.g. -p LR 0.5; got \"'fast'\""),
    ("STEPS", "True", "expects an int, e.g. -p STEPS 3; got 'True'"),
])
def test_wrong_type_is_refused_with_the_expected_type(tiny_notebook, name, value, expected):
    with pytest.raises(ParameterError) as err:
        resolve_parameters(read_scales(tiny_notebook), "ci", {name: value})
    assert expected in str(err.value)


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


# ------------------------------------------------------------------ coercion, element by element
@pytest.mark.parametrize("default,text,message", [
    (3, "None", "parameter X expects an int, e.g. -p X 3; got 'None': None is accepted only "
                "where the ci default is None"),
    ([1, 2], "['a', None]", "parameter X expects a list of int, e.g. -p X '[1, 2]'; got "
                            "\"['a', None]\": element [0] is 'a': not an int"),
    ([1, 2], "[1, None]", "got '[1, None]': element [1] is None: None is accepted only where"),
    ((0.9, 0.999), "(0.9, 'x')", "expects a tuple of float, e.g. -p X '(0.9, 0.999)'; got "
                                 "\"(0.9, 'x')\": element [1] is 'x': not a float"),
    ((1, "a"), "(1, 2)", "expects a tuple (int, str), e.g. -p X \"(1, 'a')\"; got '(1, 2)': "
                         "element [1] is 2: not a str"),
    ((1, "a"), "(1,)", "got '(1,)': needs 2 elements, not 1"),
    ({"a": 1}, "{'a': 'x'}", "expects a dict of str to int"),
    ([[1]], "[[1], [None]]", "element [1][0] is None"),
])
def test_every_element_must_match_the_default_and_none_only_where_the_default_is_none(
        default, text, message):
    with pytest.raises(ParameterError) as err:
        coerce_value("X", text, default)
    assert message in str(err.value)


@pytest.mark.parametrize("default,text", [
    (0.5, "1e999"), (0.5, "-1e999"), (0.5, "1" + "0" * 400), ([0.5], "[0.1, 1e999]"),
    (None, "1e999"),
])
def test_non_finite_floats_are_refused(default, text):
    with pytest.raises(ParameterError, match="finite"):
        coerce_value("LR", text, default)


def test_a_number_for_a_string_parameter_says_how_to_quote_it():
    with pytest.raises(ParameterError) as err:
        coerce_value("NAME", "123", "tiny")
    assert str(err.value) == (
        "parameter NAME expects a str, e.g. -p NAME tiny; got '123', which reads as an int; "
        "to pass the text 123, quote it: -p NAME '\"123\"'")
    assert coerce_value("NAME", '"123"', "tiny") == "123"  # the quoted form works


def test_a_valid_list_keeps_its_kind_and_widens_ints_to_float():
    assert coerce_value("B", "[0.9, 1]", (0.9, 0.999)) == (0.9, 1.0)
    assert coerce_value("S", "(1, 2)", [3]) == [1, 2]
    assert coerce_value("E", "[None, 'x', 2]", []) == [None, "x", 2]  # empty default: free
    assert coerce_value("E", "[None, 3]", [None]) == [None, 3]  # elements whose default is None


def test_a_none_default_takes_any_literal_or_what_its_comment_declares(tiny_notebook):
    text = tiny_notebook.read_text()
    for scale_line in ('STEPS = 3  # ci\n', "STEPS = 30\n", "STEPS = 3000  # paper, Table 1\n"):
        text = text.replace(scale_line, scale_line + "RESUME = None  # accepts: str\n"
                            "EXTRA = None\n", 1)
    tiny_notebook.write_text(text)
    s = read_scales(tiny_notebook)
    assert resolve_parameters(s, "ci", {"RESUME": "run1", "EXTRA": "[1, 'a']"})["EXTRA"] == [
        1, "a"]
    assert resolve_parameters(s, "ci", {"RESUME": "None"})["RESUME"] is None
    with pytest.raises(ParameterError) as err:
        resolve_parameters(s, "ci", {"RESUME": "3"})
    assert str(err.value) == (
        "parameter RESUME expects None or a str (its `# accepts:` comment), e.g. -p RESUME "
        "text; got '3'; to pass the text 3, quote it: -p RESUME '\"3\"'")


def test_an_unknown_type_in_an_accepts_comment_is_refused_when_read(tiny_notebook):
    text = tiny_notebook.read_text()
    for scale_line in ('STEPS = 3  # ci\n', "STEPS = 30\n", "STEPS = 3000  # paper, Table 1\n"):
        text = text.replace(scale_line, scale_line + "RESUME = None  # accepts: path\n", 1)
    tiny_notebook.write_text(text)
    with pytest.raises(ParameterError, match="RESUME's `# accepts:` comment names path"):
        read_scales(tiny_notebook)
