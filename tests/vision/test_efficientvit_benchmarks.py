"""The EfficientViT benchmark scripts' own logic, on the CPU with tiny settings: the order of
models alternates between rounds, spreads and ratios are computed from the timed calls, and
the GPU script refuses to run without CUDA (its measuring code is run on the CPU)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_rounds_alternate_the_model_order():
    bench = load_script("efficientvit_throughput")
    order: list[str] = []
    calls = {k: (lambda k=k: order.append(k)) for k in "abc"}
    seconds, loads = bench.time_rounds(calls, rounds=3, repeat=1, warmup=0)
    assert order == list("abc") + list("cba") + list("abc")
    assert all(len(s) == 3 for s in seconds.values()) and all(len(v) == 3 for v in loads.values())


def test_throughput_script_writes_folded_and_unfolded_rows_with_spread(tmp_path):
    bench = load_script("efficientvit_throughput")
    out = tmp_path / "t.json"
    assert bench.main(["--models", "efficientvit_m0", "mobilenetv3_large_100", "--batch", "1",
                       "--resolution", "64", "--rounds", "2", "--repeat", "1",
                       "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = {(r["model"], r["bn"]): r for r in doc["rows"]}
    assert set(rows) == {(m, bn) for m in ("efficientvit_m0", "mobilenetv3_large_100")
                         for bn in ("folded", "unfolded")}
    for row in rows.values():
        assert row["img_per_s_min"] <= row["img_per_s"] <= row["img_per_s_max"]
        assert row["load_avg_1min"] >= 0
    assert rows[("mobilenetv3_large_100", "folded")]["vs_mnv3_large"] == 1.0
    assert "load_avg_1min" in doc["meta"] and "under_load" in doc["meta"]
    assert len({tuple(r) for r in doc["rows"]}) == 1  # the book needs the same keys per row


def test_gpu_script_exits_2_without_cuda(monkeypatch, capsys, tmp_path):
    gpu = load_script("efficientvit_gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path / "g.json")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "g.json").exists()


def test_gpu_measurement_code_runs_on_the_cpu(monkeypatch):
    gpu = load_script("efficientvit_gpu")
    monkeypatch.setattr(gpu, "DEVICE", "cpu")
    args = gpu.parse_args(["--batch", "2", "--resolution", "64", "--warmup", "1",
                           "--rounds", "2", "--repeat", "1", "--no-amp"])
    rows = gpu.measure(["efficientvit_m0", "mobilenetv3_large_100", "no_such_model"], args)
    by_model = {r["model"]: r for r in rows}
    assert set(rows[0]) == set(gpu.COLUMNS)
    assert by_model["efficientvit_m0"]["batch"] == 2 and by_model["efficientvit_m0"]["error"] == ""
    assert by_model["mobilenetv3_large_100"]["vs_mnv3_large"] == 1.0
    failed = by_model["no_such_model"]  # one failing model becomes a row saying why
    assert failed["error"] and failed["img_per_s"] is None
