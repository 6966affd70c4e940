"""Progress: a live bar interactively, one summary line in executed notebooks."""

from __future__ import annotations

import pytest

from repro import progress


def test_summary_mode_prints_one_line_when_the_loop_ends(monkeypatch, capsys):
    monkeypatch.setenv("REPRO_PROGRESS", "summary")
    bar = progress.progress(total=5, desc="train", unit="steps")
    assert isinstance(bar, progress.Summary)
    for _ in range(5):
        bar.update(1)
    bar.set_postfix(loss="0.1234")
    assert capsys.readouterr().out == ""  # nothing while it runs
    bar.close()
    bar.close()  # closing twice prints once
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("train: 5/5 steps in ") and lines[0].endswith(", loss=0.1234")


def test_summary_mode_wraps_an_iterable_and_counts_from_initial(monkeypatch, capsys):
    monkeypatch.setenv("REPRO_PROGRESS", "summary")
    items = list(progress.progress(range(3), desc="eval"))
    assert items == [0, 1, 2]
    assert capsys.readouterr().out.startswith("eval: 3/3 it in ")
    bar = progress.progress(total=10, initial=4, desc="resume")
    bar.update(6)
    bar.close()
    assert "resume: 10/10 it" in capsys.readouterr().out


def test_off_mode_and_disabled_bars_print_nothing(monkeypatch, capsys):
    monkeypatch.setenv("REPRO_PROGRESS", "off")
    with progress.progress(total=2) as bar:
        bar.update(2)
    monkeypatch.setenv("REPRO_PROGRESS", "summary")
    with progress.progress(total=2, enabled=False) as bar:
        bar.update(2)
    assert capsys.readouterr().out == ""


def test_bar_mode_is_tqdm(monkeypatch):
    monkeypatch.setenv("REPRO_PROGRESS", "bar")
    from tqdm.auto import tqdm

    bar = progress.progress(total=1, desc="x")
    assert isinstance(bar, tqdm)
    bar.close()


def test_an_unknown_mode_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv("REPRO_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="bar, summary, off"):
        progress.progress(total=1)


def test_fit_under_repro_run_leaves_one_line(monkeypatch, capsys):
    import torch

    from repro.train import TrainConfig, fit

    monkeypatch.setenv("REPRO_PROGRESS", "summary")
    model = torch.nn.Linear(2, 1)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))

    def loss_fn(m, batch):
        return m(batch).pow(2).mean()

    fit(model, loss_fn, lambda step: x, TrainConfig(steps=3, desc="tiny"))
    out = capsys.readouterr()
    assert "0%|" not in out.out + out.err
    lines = [line for line in out.out.splitlines() if line.startswith("tiny:")]
    assert len(lines) == 1 and lines[0].startswith("tiny: 3/3 steps in ")


def test_an_executed_notebook_keeps_no_third_party_progress_residue(tmp_path):
    """transformers, timm and diffusers draw their own tqdm bars; under repro run they are off,
    while our own loops still print their one summary line."""
    from repro.execute import run_notebook

    nb = tmp_path / "01_bars.py"
    nb.write_text('# %% tags=["parameters"]\nN = 3\n\n# %%\nfrom tqdm.auto import tqdm\n'
                  'for _ in tqdm(range(N), desc="third party"):\n    pass\n'
                  'from repro.progress import progress\n'
                  'for _ in progress(range(N), desc="ours"):\n    pass\n')
    out = run_notebook(nb, "ci", output=tmp_path / "out.ipynb").output
    import nbformat

    text = "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells
                   for o in c.get("outputs", []))
    assert "0%|" not in text and "third party" not in text
    assert text.count("ours: 3/3 it in ") == 1
