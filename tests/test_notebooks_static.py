"""Structure of every notebook, without running it: pairs in sync (by content, not mtime),
the tagged scale cells, the first markdown cell, the Colab install cell, claims files."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest
from jupytext.compare import compare_notebooks

import repro
from repro.ledger import load_claims
from repro.scales import read_scales

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*/[0-9]*.py"))
IDS = [f"{p.parent.name}/{p.stem}" for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_paired_ipynb_is_in_sync_and_has_no_outputs(path):
    ipynb = path.with_suffix(".ipynb")
    assert ipynb.exists(), f"run `jupytext --sync {path}` (or `nox -s sync`)"
    nb_ipynb = jupytext.read(ipynb)
    compare_notebooks(nb_ipynb, jupytext.read(path), fmt="py:percent")
    for cell in nb_ipynb.cells:
        assert not cell.get("outputs"), f"{ipynb} has outputs: commit it stripped"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_scales_are_complete_and_full_values_cite_a_source(path):
    scales = read_scales(path)
    assert "full" in scales.available()
    missing = [n for n in scales.names if not scales.comments["full"].get(n)]
    assert not missing, f"{path}: full-scale values without a source comment: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_opens_with_citation_and_colab_badge_then_the_install_cell(path):
    nb = jupytext.read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    colab = (f"colab.research.google.com/github/repro-companion/repro/blob/main/"
             f"notebooks/{path.parent.name}/{path.stem}.ipynb")
    assert colab in first.source
    assert "arxiv.org" in first.source.lower() or "doi" in first.source.lower()
    install = next(c for c in nb.cells if c.cell_type == "code")
    assert '"google.colab" in sys.modules' in install.source
    assert f"@{repro.RELEASE_TAG}" in install.source
    assert " -U" not in install.source and "--upgrade" not in install.source
    for pin in ("torch==", "numpy=="):
        assert pin not in install.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_ends_with_exercises_and_claims(path):
    nb = jupytext.read(path)
    assert any(c.cell_type == "markdown" and "Exercises" in c.source for c in nb.cells)
    assert "repro.ledger.show(" in nb.cells[-1].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_records_only_claims_its_chapter_lists(path):
    import re

    chapter = load_claims(path.parent / "claims.yaml")
    known = {c.id for c in chapter.claims}
    used = set(re.findall(r"record\(\s*[\"']([\w\-]+)[\"']", path.read_text()))
    assert used <= known, f"{path}: unknown claim ids {sorted(used - known)}"
    expected = {c.id for c in chapter.claims if c.notebook == path.stem
                and c.scale in ("ci", "local")}
    assert expected <= used, f"{path}: claims.yaml expects it to record {expected - used}"


def test_every_claims_file_is_valid():
    for path in sorted((ROOT / "notebooks").glob("*/claims.yaml")):
        chapter = load_claims(path)
        stems = {p.stem for p in path.parent.glob("[0-9]*.py")}
        for claim in chapter.claims:
            if claim.notebook:
                assert claim.notebook in stems, f"{path}: {claim.id} names {claim.notebook}"


def test_every_notebook_is_in_the_book():
    toc = (ROOT / "book" / "_toc.yml").read_text()
    for path in NOTEBOOKS:
        assert f"notebooks/{path.parent.name}/{path.stem}" in toc
