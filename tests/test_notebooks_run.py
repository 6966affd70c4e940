"""Every notebook at ci scale through `repro run`, then its chapter's ci claims.

The executed copies land in build/executed/ where `repro book` reuses them (execute once,
use twice). Run two at a time with `-n 2`; each kernel uses one thread.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from repro import ledger
from repro.errors import NotebookFailed
from repro.execute import default_output, run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*/[0-9]*.py"))


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS,
                         ids=[f"{p.parent.name}/{p.stem}" for p in NOTEBOOKS])
def test_notebook_runs_at_ci_scale_and_its_ci_claims_hold(path):
    out = default_output(path.relative_to(ROOT), ROOT / "build" / "executed")
    try:
        result = run_notebook(path, "ci", output=out, threads=1, timeout=600)
    except NotebookFailed as err:  # the one-line error, then the cell's traceback for the log
        pytest.fail(f"{err}\n{err.traceback}", pytrace=False)
    chapter = ledger.load_claims(path.parent / "claims.yaml")
    measured = ledger.read_executed(result.output)
    rows = [r for r in ledger.evaluate(chapter, measured) if r.claim.notebook == path.stem]
    bad = [f"{r.claim.id}: {r.status} (measured {r.measurement and r.measurement.value}, "
           f"check {r.claim.check})" for r in rows
           if r.claim.scale == "ci" and r.status != ledger.STATUS_CI]
    assert not bad, "; ".join(bad)
    print(f"{path.name}: {result.seconds:.1f} s")
