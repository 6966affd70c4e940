"""`repro run` and friends: real kernel runs of a tiny notebook, and every bad input refused
before a kernel starts, with one clear line and nothing half-written."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest

from repro.cli import main


def _files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_run_executes_at_a_scale_with_overrides_and_records_it(tiny_notebook, tmp_path):
    out = tmp_path / "out" / "tiny.ipynb"
    code = main(["run", str(tiny_notebook), "--scale", "local", "-p", "LR", "0.1",
                 "--output", str(out)])
    assert code == 0
    nb = nbformat.read(out, as_version=4)
    meta = nb.metadata["repro"]
    assert meta["scale"] == "local" and meta["parameters"]["STEPS"] == 30
    assert meta["parameters"]["LR"] == 0.1 and meta["overrides"] == {"LR": "0.1"}
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "tiny True 3.0" in printed  # 30 steps × 0.1 computed in the kernel
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "hide-input" in injected[0].metadata["tags"]
    assert _files(out.parent) == ["tiny.ipynb"]  # no temporary files left


@pytest.mark.parametrize("argv_tail,message", [
    (["--scale", "huge"], "unknown scale 'huge'"),
    (["-p", "STPES", "4"], "unknown parameter 'STPES'"),
    (["-p", "STEPS", "four"], "parameter STEPS expects an int, e.g. -p STEPS 3; got 'four'"),
    (["-p", "STEPS", "None"], "None is accepted only where the ci default is None"),
    (["-p", "LR", "1e999"], "not a finite number (1e999 reads as inf)"),
    (["-p", "NAME", "123"], "to pass the text 123, quote it: -p NAME '\"123\"'"),
    (["-p", "STEPS", "1", "-p", "STEPS", "2"], "given twice"),
])
def test_bad_input_fails_before_the_kernel_with_one_line(tiny_notebook, tmp_path, capsys,
                                                         argv_tail, message):
    out = tmp_path / "o" / "x.ipynb"
    code = main(["run", str(tiny_notebook), "--output", str(out), *argv_tail])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.parent.exists()  # nothing was written


def test_missing_notebook_is_named(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.py")]) == 2
    assert "notebook not found" in capsys.readouterr().err


@pytest.mark.slow
def test_failing_run_removes_the_previous_output_and_names_the_failed_notebook(
        tiny_notebook, tmp_path, capsys):
    out = tmp_path / "o" / "tiny.ipynb"
    assert main(["run", str(tiny_notebook), "--output", str(out)]) == 0  # a good earlier run
    capsys.readouterr()
    tiny_notebook.write_text(tiny_notebook.read_text() + "\n# %%\nraise RuntimeError('boom')\n")
    assert main(["run", str(tiny_notebook), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    failed = out.with_name("tiny.failed.ipynb")
    assert err == (f"repro: error: {tiny_notebook} failed: cell [4] raised RuntimeError: boom. "
                   f"Open {failed} for the traceback; nothing is left at {out} (the previous run "
                   "there was removed).\n")
    assert _files(out.parent) == ["tiny.failed.ipynb"]  # no stale output, no .running file
    errors = [o for c in nbformat.read(failed, as_version=4).cells
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors and errors[0]["evalue"] == "boom"


@pytest.mark.parametrize("layout,message", [
    ("dir", "--output {out} is a folder: give a file path such as {out}/01_tiny.ipynb"),
    ("file-parent", "--output {out}: {parent} is a file, not a folder; choose another --output"),
    ("source", "would overwrite the notebook's own source"),
])
def test_a_bad_output_path_is_refused_before_the_kernel_starts(tiny_notebook, tmp_path, capsys,
                                                               monkeypatch, layout, message):
    import papermill as pm

    def no_kernel(*args, **kwargs):
        raise AssertionError("the kernel started")

    monkeypatch.setattr(pm, "execute_notebook", no_kernel)
    parent = tmp_path / "plain"
    if layout == "dir":
        out = tmp_path / "o.ipynb"
        out.mkdir()
    elif layout == "file-parent":
        parent.write_text("a file")
        out = parent / "sub" / "o.ipynb"
    else:
        out = tiny_notebook.with_suffix(".ipynb")
    before = _files(tmp_path)
    assert main(["run", str(tiny_notebook), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert message.format(out=out, parent=parent) in err and err.count("\n") == 1
    assert _files(tmp_path) == before  # nothing left behind, no .running.ipynb


def test_scales_prints_side_by_side(tiny_notebook, capsys):
    assert main(["scales", str(tiny_notebook)]) == 0
    out = capsys.readouterr().out
    assert "STEPS" in out and "3000" in out and "paper, Table 1" in out


def test_ledger_check_exits_nonzero_when_a_ci_claim_is_missing(tiny_notebook, tmp_path):
    nbroot = tiny_notebook.parents[1]
    assert main(["ledger", "--executed", str(tmp_path / "none"), "--notebooks", str(nbroot),
                 "--check"]) == 1
    assert main(["ledger", "--executed", str(tmp_path / "none"), "--notebooks",
                 str(nbroot)]) == 0


def test_python_dash_m_and_help_are_fast_and_do_not_import_torch():
    code = ("import sys, repro.cli; repro.cli._parser(load_train=False); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    res = subprocess.run([sys.executable, "-m", "repro", "--version"], capture_output=True,
                         text=True)
    assert res.returncode == 0 and res.stdout.startswith("repro ")


def test_ledger_out_is_written_atomically(tiny_notebook, tmp_path, monkeypatch, capsys):
    import os

    nbroot, page = tiny_notebook.parents[1], tmp_path / "site" / "status.md"
    args = ["ledger", "--executed", str(tmp_path / "none"), "--notebooks", str(nbroot),
            "--out", str(page)]
    assert main(args) == 0 and "total" in page.read_text()
    page.write_text("previous page")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        main(args)
    assert page.read_text() == "previous page"  # the old page intact, not a truncated new one
    assert _files(page.parent) == ["status.md"]  # and no temporary beside it


def test_ledger_out_that_is_a_folder_is_one_clear_line(tiny_notebook, tmp_path, capsys):
    nbroot = tiny_notebook.parents[1]
    assert main(["ledger", "--executed", str(tmp_path / "none"), "--notebooks", str(nbroot),
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"repro: error: --out: {tmp_path} is a directory, not a file: give a file path\n"
