from __future__ import annotations

import textwrap

import nbformat
import pytest

from repro import ledger
from repro.errors import ReproError


def _executed(path, records, scale="ci"):
    """An executed notebook holding display outputs as ledger.record writes them."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["repro"] = {"scale": scale}
    cell = nbformat.v4.new_code_cell("x")
    for cid, value in records:
        cell.outputs.append(nbformat.v4.new_output(
            "display_data", data={ledger.MIME: {"claim": cid, "value": value, "context": {}}},
            metadata={"repro": {"claim": cid}}))
    nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def chapter(tiny_notebook):
    return ledger.load_claims(tiny_notebook.parent / "claims.yaml")


def test_passing_ci_value_is_reproduced_and_gpu_claim_is_gpu_only(tmp_path, chapter):
    _executed(tmp_path / "exec" / "tiny" / "01_tiny.ipynb", [("total", 1.5)])
    rows = ledger.evaluate(chapter, ledger.collect(tmp_path / "exec")["tiny"])
    assert [r.status for r in rows] == [ledger.STATUS_CI, ledger.STATUS_GPU]


def test_failing_check_is_failed_and_reported_by_failures(tmp_path, tiny_notebook):
    _executed(tmp_path / "exec" / "tiny" / "01_tiny.ipynb", [("total", 0.5)])
    rows = ledger.build(tmp_path / "exec", tiny_notebook.parents[1])
    assert rows["tiny"][0].status == ledger.STATUS_FAILED
    assert [r.claim.id for r in ledger.failures(rows)] == ["total"]


def test_missing_ci_value_counts_as_failure(tmp_path, tiny_notebook):
    rows = ledger.build(tmp_path / "nothing", tiny_notebook.parents[1])
    assert rows["tiny"][0].status == ledger.STATUS_MISSING
    assert ledger.failures(rows)


def test_local_run_gives_reproduced_at_local(tmp_path, chapter):
    _executed(tmp_path / "e" / "tiny" / "01_tiny.ipynb", [("total", 3.0)], scale="local")
    rows = ledger.evaluate(chapter, ledger.collect(tmp_path / "e")["tiny"])
    assert rows[0].status == ledger.STATUS_LOCAL


@pytest.mark.parametrize("check,value,expected", [
    ({"op": ">", "value": 1}, 1, False), ({"op": ">=", "value": 1}, 1, True),
    ({"op": "<", "value": 0}, -1e-9, True), ({"op": "between", "value": [1, 2]}, 2, True),
    ({"op": "between", "value": [1, 2]}, 2.01, False), (None, 5, None),
])
def test_checks_follow_their_operator(check, value, expected):
    assert ledger.passes(check, value) is expected


def test_claims_file_validation_names_the_problem(tmp_path):
    bad = tmp_path / "claims.yaml"
    bad.write_text(textwrap.dedent("""\
        paper: x
        claims:
          - {id: a, claim: c, metric: m, scale: full}
        """))
    with pytest.raises(ReproError, match="needs a 'reason'"):
        ledger.load_claims(bad)
    bad.write_text("paper: x\nclaims:\n  - {id: a, claim: c, metric: m, scale: ci}\n")
    with pytest.raises(ReproError, match="needs a check"):
        ledger.load_claims(bad)


def test_record_refuses_an_id_missing_from_claims_yaml(tiny_notebook, monkeypatch):
    monkeypatch.chdir(tiny_notebook.parent)
    with pytest.raises(ReproError, match="unknown claim id 'totl'"):
        ledger.record("totl", 1.0)
    ledger.record("total", 2.0, steps=4)
    assert ledger.recorded()[-1] == {"claim": "total", "value": 2.0, "context": {"steps": 4}}


def test_status_page_and_readme_block(tmp_path, tiny_notebook):
    _executed(tmp_path / "exec" / "tiny" / "01_tiny.ipynb", [("total", 1.5)])
    rows = ledger.build(tmp_path / "exec", tiny_notebook.parents[1])
    page = ledger.status_markdown(rows)
    assert "| **total**" in page and "reproduced at ci" in page and "GPU only" in page
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ledger.README_BEGIN}\nold\n{ledger.README_END}\nend\n")
    assert ledger.update_readme(readme, rows)
    text = readme.read_text()
    assert "| Tiny | 2 | 1 | 1 | 0 |" in text and text.endswith("end\n")
    assert not ledger.update_readme(readme, rows)
