"""repro.execute.run_notebook on failure, with papermill replaced by a stand-in that behaves as
papermill does when a cell raises (it writes the partial notebook, then raises): the error
carries the details, the previous output is gone, only the .failed.ipynb remains."""

from __future__ import annotations

import nbformat
import pytest

from repro.errors import NotebookFailed, ReproError
from repro.execute import run_notebook


def _files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def failing_papermill(monkeypatch):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    def execute(nb, output, **kwargs):
        nbformat.write(nb, output)
        raise PapermillExecutionError(4, 5, "x = 1 / 0", "ZeroDivisionError",
                                      "division by zero\nsecond line",
                                      ["\x1b[0;31mTraceback ...\x1b[0m"])

    monkeypatch.setattr(pm, "execute_notebook", execute)


def test_a_failed_cell_raises_notebook_failed_with_the_details(tiny_notebook, tmp_path,
                                                               failing_papermill):
    out = tmp_path / "o" / "tiny.ipynb"
    out.parent.mkdir()
    out.write_text("{}")  # an earlier successful run
    with pytest.raises(NotebookFailed) as err:
        run_notebook(tiny_notebook, output=out)
    e = err.value
    assert isinstance(e, ReproError)
    assert (e.cell, e.ename, e.evalue) == (5, "ZeroDivisionError", "division by zero second line")
    failed = out.with_name("tiny.failed.ipynb")
    assert e.failed_path == str(failed) and e.notebook == str(tiny_notebook)
    assert e.traceback == "Traceback ..."  # for a test log; the CLI prints only str(e)
    assert str(e) == (f"{tiny_notebook} failed: cell [5] raised ZeroDivisionError: division by "
                      f"zero second line. Open {failed} for the traceback; nothing is left at "
                      f"{out} (the previous run there was removed).")
    assert _files(out.parent) == ["tiny.failed.ipynb"]


def test_an_interrupt_also_leaves_no_output_and_propagates(tiny_notebook, tmp_path,
                                                           monkeypatch):
    import papermill as pm

    def interrupted(nb, output, **kwargs):
        nbformat.write(nb, output)
        raise KeyboardInterrupt

    monkeypatch.setattr(pm, "execute_notebook", interrupted)
    out = tmp_path / "o" / "tiny.ipynb"
    out.parent.mkdir()
    out.write_text("{}")
    with pytest.raises(KeyboardInterrupt):
        run_notebook(tiny_notebook, output=out)
    assert _files(out.parent) == ["tiny.failed.ipynb"]


def test_a_success_replaces_an_old_failed_notebook(tiny_notebook, tmp_path, monkeypatch):
    import papermill as pm

    monkeypatch.setattr(pm, "execute_notebook", lambda nb, output, **kw: nbformat.write(nb, output))
    out = tmp_path / "o" / "tiny.ipynb"
    out.parent.mkdir()
    (out.parent / "tiny.failed.ipynb").write_text("{}")
    result = run_notebook(tiny_notebook, output=out)
    assert result.output == out and _files(out.parent) == ["tiny.ipynb"]
    assert nbformat.read(out, as_version=4).metadata["repro"]["scale"] == "ci"


def test_while_a_run_is_going_the_previous_output_is_not_at_the_path(tiny_notebook, tmp_path,
                                                                     monkeypatch):
    """A run killed outright (SIGKILL, a CI timeout's SIGTERM) runs no cleanup: so the previous
    notebook is moved to a hidden name, which the ledger and the book skip, before the kernel
    starts, and deleted when the run ends."""
    import papermill as pm

    out = tmp_path / "o" / "tiny.ipynb"
    seen = {}

    def execute(nb, output, **kwargs):
        seen["during"] = sorted(p.name for p in out.parent.iterdir()
                                if not p.name.startswith("."))
        nbformat.write(nb, output)

    monkeypatch.setattr(pm, "execute_notebook", execute)
    out.parent.mkdir()
    out.write_text("{}")
    run_notebook(tiny_notebook, output=out)
    assert seen["during"] == []  # nothing valid-looking while the kernel runs
    assert _files(out.parent) == ["tiny.ipynb"]  # and no hidden leftovers afterwards
