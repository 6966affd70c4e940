"""Shared fixtures: a tiny notebook with all three scales, and one torch thread per test."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY_NOTEBOOK = textwrap.dedent('''\
    # %% [markdown]
    # # A tiny notebook for the runner's tests

    # %% tags=["parameters"]
    STEPS = 3  # ci
    LR = 0.5
    NAME = "tiny"
    USE_BIAS = True

    # %% tags=["parameters-local", "skip-execution"]
    STEPS = 30
    LR = 0.5
    NAME = "tiny"
    USE_BIAS = True

    # %% tags=["parameters-full", "skip-execution"]
    STEPS = 3000  # paper, Table 1
    LR = 0.1  # paper, Sec. 4
    NAME = "full"
    USE_BIAS = False

    # %%
    import repro.ledger
    total = STEPS * LR
    repro.ledger.record("total", total, steps=STEPS)
    print(NAME, USE_BIAS, total)
    ''')

TINY_CLAIMS = textwrap.dedent('''\
    paper: tiny
    title: Tiny
    citation: A. Author, "Tiny", 2024.
    claims:
      - id: total
        claim: steps times lr exceeds one
        metric: product
        paper_value: 2.0
        source: Table 1
        notebook: 01_tiny
        check: {op: ">", value: 1.0}
        scale: ci
      - id: speed
        claim: fast on GPUs
        metric: img/s
        source: Table 2
        scale: gpu
        reason: speed on GPUs cannot be measured on a CPU
    ''')


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def tiny_notebook(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks" / "tiny"
    folder.mkdir(parents=True)
    nb = folder / "01_tiny.py"
    nb.write_text(TINY_NOTEBOOK)
    (folder / "claims.yaml").write_text(TINY_CLAIMS)
    return nb
