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
    (["-p", "STEPS", "four"], "parameter STEPS expects a int"),
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
def test_failing_notebook_leaves_no_output_but_keeps_the_partial_run(tiny_notebook, tmp_path):
    tiny_notebook.write_text(tiny_notebook.read_text() + "\n# %%\nraise RuntimeError('boom')\n")
    out = tmp_path / "o" / "tiny.ipynb"
    with pytest.raises(Exception, match="boom"):
        main(["run", str(tiny_notebook), "--output", str(out)])
    assert not out.exists()
    assert _files(out.parent) == ["tiny.failed.ipynb"]


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
