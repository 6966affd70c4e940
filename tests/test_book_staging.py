"""Staging the book: reading aids added to the staged copies, outputs untouched."""

from __future__ import annotations

import nbformat

from repro import book
from repro.execute import run_notebook


def _executed(tiny_notebook, tmp_path, overrides=None):
    out = tmp_path / "exec" / "tiny" / "01_tiny.ipynb"
    run_notebook(tiny_notebook, "ci", overrides, out)
    return out


def _md(nb):
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


def test_annotate_labels_each_scale_and_tables_them(tiny_notebook, tmp_path):
    out = _executed(tiny_notebook, tmp_path)
    before = nbformat.read(out, as_version=4)
    book.annotate(out, tiny_notebook)
    nb = nbformat.read(out, as_version=4)
    md = "\n".join(_md(nb))
    for scale in ("ci", "local", "full"):
        assert f"repro-scale-{scale}" in md
    assert "what this page ran" in md and md.count("not run on this page") == 2
    # the scales table: one row per parameter, values and the full cell's comment as source
    assert "<code>STEPS</code></td><td><code>3</code></td><td><code>30</code></td>" \
        "<td><code>3000</code></td><td>paper, Table 1</td>" in md
    # the label sits right before its cell
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    i = next(k for k, t in enumerate(tags) if "parameters-full" in t)
    assert "repro-scale-full" in nb.cells[i - 1].source
    # outputs are untouched
    code_before = [c.get("outputs") for c in before.cells if c.cell_type == "code"]
    code_after = [c.get("outputs") for c in nb.cells if c.cell_type == "code"]
    assert code_before == code_after


def test_overridden_parameters_stay_visible_and_say_so(tiny_notebook, tmp_path):
    out = _executed(tiny_notebook, tmp_path, {"STEPS": "7"})
    book.annotate(out, tiny_notebook)
    nb = nbformat.read(out, as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "hide-input" not in injected.metadata["tags"]
    assert any("this run overrode `STEPS`" in s for s in _md(nb))


def test_unchanged_injected_parameters_stay_folded(tiny_notebook, tmp_path):
    out = _executed(tiny_notebook, tmp_path)
    book.annotate(out, tiny_notebook)
    nb = nbformat.read(out, as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "hide-input" in injected.metadata["tags"]
    assert any("injected the ci values unchanged" in s for s in _md(nb))


def test_colab_badge_becomes_a_local_image(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(
        f"[![Open In Colab]({book.COLAB_BADGE})](https://colab.research.google.com/x.ipynb)"))
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    book.annotate(path, None)
    text = nbformat.read(path, as_version=4).cells[0].source
    assert book.COLAB_BADGE not in text and book.LOCAL_BADGE in text
    assert "https://colab.research.google.com/x.ipynb" in text  # the link itself stays
