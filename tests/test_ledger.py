from __future__ import annotations

import textwrap
from pathlib import Path

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
    assert '<code class="repro-claim-id">total</code>' in page
    assert '<span class="repro-status repro-status-ok">reproduced at ci</span>' in page
    assert '<span class="repro-status repro-status-gpu">GPU only</span>' in page
    # the one-line summary counts each status once, in the book's colours
    assert "2 claims: " in page and ">1 reproduced at ci</span>" in page
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ledger.README_BEGIN}\nold\n{ledger.README_END}\nend\n")
    assert ledger.update_readme(readme, rows)
    text = readme.read_text()
    # chapter | claims | reproduced | contradicted | needs full / GPU | failed
    assert "| Tiny | 2 | 1 | 0 | 1 | 0 |" in text and text.endswith("end\n")
    assert not ledger.update_readme(readme, rows)


CONTRADICTABLE = textwrap.dedent("""\
    paper: tiny
    title: Tiny
    citation: c
    claims:
      - {id: total, claim: c, metric: m, scale: ci, check: {op: ">", value: 1.0}}
      - id: bigger_wins
        claim: the big model wins at full scale
        metric: gap
        scale: full
        check: {op: ">", value: 0.0}
        reason: toy models are too small
      - {id: unmeasured, claim: c, metric: m, scale: full, reason: needs a cluster}
      - {id: later, claim: c, metric: m, scale: local, check: {op: ">", value: 1.0}}
    """)


@pytest.fixture
def contradictable(tmp_path):
    folder = tmp_path / "nb" / "tiny"
    folder.mkdir(parents=True)
    (folder / "claims.yaml").write_text(CONTRADICTABLE)
    return tmp_path / "nb"


def test_full_claim_measured_against_the_paper_at_ci_is_contradicted_not_unmeasured(
        tmp_path, contradictable):
    _executed(tmp_path / "e" / "tiny" / "01.ipynb", [("total", 2.0), ("bigger_wins", -0.3)])
    rows = {r.claim.id: r for r in ledger.build(tmp_path / "e", contradictable)["tiny"]}
    assert rows["bigger_wins"].status == ledger.STATUS_CONTRADICTED
    assert rows["unmeasured"].status == ledger.STATUS_FULL
    # --check stays green: the paper's claim is about its full scale
    assert ledger.failures({"tiny": list(rows.values())}) == []
    block = ledger.readme_block({"tiny": list(rows.values())})
    assert "| Tiny | 4 | 1 | 1 | 2 | 0 |" in block
    page = ledger.status_markdown({"tiny": list(rows.values())})
    assert "repro-status-contradicted" in page and "-0.3" in page


def test_full_claim_whose_ci_value_agrees_stays_needs_full_scale(tmp_path, contradictable):
    _executed(tmp_path / "e" / "tiny" / "01.ipynb", [("total", 2.0), ("bigger_wins", 0.3)])
    rows = {r.claim.id: r for r in ledger.build(tmp_path / "e", contradictable)["tiny"]}
    assert rows["bigger_wins"].status == ledger.STATUS_FULL


def test_full_claim_measured_at_full_scale_is_judged(tmp_path, contradictable):
    _executed(tmp_path / "e" / "tiny" / "01.ipynb", [("bigger_wins", 0.3)], scale="full")
    rows = {r.claim.id: r for r in ledger.build(tmp_path / "e", contradictable)["tiny"]}
    assert rows["bigger_wins"].status == ledger.STATUS_FULL_OK


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", float("nan"), float("inf")])
@pytest.mark.parametrize("claim_id", ["total", "bigger_wins", "unmeasured", "later"])
def test_non_finite_measurement_fails_whatever_the_scale(tmp_path, contradictable, value,
                                                         claim_id):
    _executed(tmp_path / "e" / "tiny" / "01.ipynb", [("total", 2.0), (claim_id, value)])
    rows = ledger.build(tmp_path / "e", contradictable)
    row = next(r for r in rows["tiny"] if r.claim.id == claim_id)
    assert row.status == ledger.STATUS_FAILED
    assert [r.claim.id for r in ledger.failures(rows)] == [claim_id]


def test_record_keeps_non_finite_values_visible_as_text(tiny_notebook, monkeypatch):
    monkeypatch.chdir(tiny_notebook.parent)
    ledger.record("total", float("nan"))
    assert ledger.recorded()[-1]["value"] == "nan"


GOOD_ROW = "{id: a, claim: c, metric: m, scale: ci, check: {op: '>', value: 1}}"


@pytest.mark.parametrize("body,message", [
    ("claims: null", r"claims\.yaml, field 'claims': expected a non-empty list"),
    ("claims: []", r"field 'claims': expected a non-empty list"),
    ("claimz: []", r"unknown top-level field 'claimz' \(did you mean 'claims'\?\)"),
    ("claims:\n  - {id: a, claim: c, metric: m, scale: ci, check: '> 1'}",
     r"claim 'a', field 'check': expected a mapping"),
    ("claims:\n  - {id: a, claim: c, metric: m, scale: ci, check: {op: between, value: 3}}",
     r"claim 'a', field 'check.value': 'between' needs two finite numbers"),
    ("claims:\n  - {id: a, claim: c, metric: m, scale: ci, check: {op: '>'}}",
     r"claim 'a', field 'check.value': missing"),
    ("claims:\n  - {id: a, claim: c, metric: m, scale: ci, check: {op: '>', value: big}}",
     r"claim 'a', field 'check.value': '>' needs one finite number, got 'big'"),
    ("claims:\n  - {id: a, claim: c, metric: m, scale: ci, check: {op: '=>', value: 1}}",
     r"claim 'a', field 'check.op': '=>' is not one of"),
    ("claims:\n  - {id: a, claim: c, metric: m, scale: ci, chek: {op: '>', value: 1}}",
     r"claim 'a': unknown field 'chek' \(did you mean 'check'\?\)"),
    ("claims:\n  - {id: a, claim: c, scale: ci, check: {op: '>', value: 1}}",
     r"claim 'a', field 'metric': missing"),
    ("claims:\n  - {claim: c, metric: m, scale: ci, check: {op: '>', value: 1}}",
     r"claim #1, field 'id': missing"),
    ("claims:\n  - {id: a, claim: c, metric: m, scale: huge, check: {op: '>', value: 1}}",
     r"claim 'a', field 'scale': 'huge' is not one of ci, local, full, gpu"),
    ("claims:\n  - " + GOOD_ROW + "\n  - " + GOOD_ROW, r"claim 'a', field 'id': duplicate id"),
    ("claims:\n  - just a string", r"claim #1: expected a mapping of fields"),
    ("claims: [", r"not valid YAML"),
])
def test_malformed_claims_file_gets_one_line_naming_file_claim_and_field(tmp_path, body,
                                                                         message):
    bad = tmp_path / "claims.yaml"
    bad.write_text("paper: x\ntitle: X\n" + body + "\n")
    with pytest.raises(ReproError, match=message) as info:
        ledger.load_claims(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_repro_ledger_reports_a_malformed_claims_file_in_one_line(tmp_path, capsys):
    from repro.cli import main

    folder = tmp_path / "notebooks" / "x"
    folder.mkdir(parents=True)
    (folder / "claims.yaml").write_text("paper: x\nclaims: null\n")
    code = main(["ledger", "--notebooks", str(tmp_path / "notebooks"),
                 "--executed", str(tmp_path / "none")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "field 'claims'" in err[0]
    assert "Traceback" not in err[0]


def test_show_finds_the_packaged_claims_outside_a_checkout(tmp_path, monkeypatch):
    """A notebook run alone in an empty folder: no claims.yaml beside it, the chapter's
    claims come from the package's copy (repro.resources)."""
    import pandas as pd

    from repro import resources

    claims = tmp_path / "pkg" / "tiny.yaml"
    claims.parent.mkdir()
    claims.write_text(CONTRADICTABLE)
    monkeypatch.setattr(resources, "claims_files", lambda: {"tiny": claims})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ledger, "_RECORDED", [])
    ledger.record("bigger_wins", -1.0)
    df = ledger.show()
    assert isinstance(df, pd.DataFrame)
    row = df.iloc[0]
    assert row["claim"] == "bigger_wins" and row["check"] == "> 0"
    assert row["scale"] == "full" and row["holds"] == "contradicted at ci"


def test_chapter_claims_prefers_the_local_file_then_the_packaged_copy(tmp_path, monkeypatch):
    from repro import resources

    packaged = tmp_path / "pkg" / "tiny.yaml"
    packaged.parent.mkdir()
    packaged.write_text(CONTRADICTABLE)
    monkeypatch.setattr(resources, "claims_files", lambda: {"tiny": packaged})
    monkeypatch.chdir(tmp_path)
    assert ledger.chapter_claims("tiny").path == packaged
    (tmp_path / "claims.yaml").write_text(CONTRADICTABLE)
    assert ledger.chapter_claims("tiny").path == Path("claims.yaml")
    with pytest.raises(ReproError, match="no claims file for chapter 'nope'"):
        monkeypatch.chdir(packaged.parent)
        ledger.chapter_claims("nope")
