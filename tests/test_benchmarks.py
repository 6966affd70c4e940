"""The benchmark scripts' CPU-safe parts: ``--help`` without a GPU, the FP8 benchmark's refusal
(exit 2, a message naming what it needs) where there is no CUDA, its rows and JSON writer, and
that one failed measurement becomes a row with the error instead of losing the table."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FP8_GPU = ROOT / "benchmarks" / "fp8_gpu.py"
EFFICIENTVIT = ROOT / "benchmarks" / "efficientvit_throughput.py"


def run_script(script: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **env}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=120, env=environ, cwd=ROOT)


@pytest.fixture(scope="module")
def fp8_gpu():
    spec = importlib.util.spec_from_file_location("fp8_gpu_benchmark", FP8_GPU)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fp8_gpu_help_lists_its_options_and_imports_no_torch():
    done = run_script(FP8_GPU, "--help")
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout and "--out" in done.stdout and "8.9" in done.stdout
    probe = subprocess.run(
        [sys.executable, "-c", f"import runpy, sys; sys.argv = ['x', '--help']\n"
         f"try: runpy.run_path({str(FP8_GPU)!r}, run_name='__main__')\n"
         "except SystemExit: pass\n"
         "print('torch' in sys.modules)"], capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip().splitlines()[-1] == "False"


def test_fp8_gpu_without_cuda_exits_2_naming_what_it_needs(tmp_path):
    out = tmp_path / "fp8_gpu.json"
    done = run_script(FP8_GPU, "--quick", "--out", str(out), CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 2
    assert "needs a CUDA GPU with FP8 tensor cores (compute capability >= 8.9" in done.stderr
    assert "torch.cuda.is_available() is False" in done.stderr
    assert not out.exists()


def test_rows_share_their_keys_and_the_json_has_command_meta_rows(fp8_gpu, tmp_path):
    rows = [fp8_gpu.make_row("a", "square 4096", "bf16 matmul", "4096x4096x4096", ms=0.25,
                             tflops=549.8, vs_bf16=1.0),
            fp8_gpu.make_row("c", "block", "torchao float8", note="skipped: no torchao")]
    assert [list(r) for r in rows] == [list(fp8_gpu.COLUMNS)] * 2
    path = fp8_gpu.write_results(tmp_path / "r.json", "python benchmarks/fp8_gpu.py",
                                 {"gpu": "none"}, rows)
    data = json.loads(path.read_text())
    assert list(data) == ["command", "meta", "rows"] and data["rows"] == rows
    table = fp8_gpu.format_table(rows).splitlines()
    assert table[0].split()[:3] == ["part", "case", "impl"] and len(table) == 4
    assert "549.8" in table[2] and "skipped: no torchao" in table[3]
    with pytest.raises(KeyError, match="unknown columns"):
        fp8_gpu.make_row("a", "x", "y", speed=1.0)
    with pytest.raises(ValueError, match="different keys"):
        fp8_gpu.write_results(tmp_path / "bad.json", "", {}, [rows[0], {"part": "a"}])


def test_the_recorded_command_drops_where_the_results_went(fp8_gpu):
    assert (fp8_gpu.recorded_command(["--quick", "--out", "/tmp/x.json", "--no-compile"])
            == "python benchmarks/fp8_gpu.py --quick --no-compile")
    assert fp8_gpu.recorded_command(["--out=/tmp/x.json"]) == "python benchmarks/fp8_gpu.py"


def test_a_failing_measurement_becomes_a_row_with_its_error(fp8_gpu):
    def boom() -> dict:
        raise RuntimeError("CUBLAS_STATUS_NOT_SUPPORTED\nmore detail")

    row = fp8_gpu.measured(fp8_gpu.make_row("a", "square 8192", "fp8"), boom)
    assert row["error"] == "RuntimeError: CUBLAS_STATUS_NOT_SUPPORTED" and row["ms"] is None
    ok = fp8_gpu.measured(fp8_gpu.make_row("a", "square 8192", "bf16"), lambda: {"ms": 1.5})
    assert ok["ms"] == 1.5 and ok["error"] == ""


def test_quick_and_full_shapes_include_the_7b_layer_gemms(fp8_gpu):
    full = {case: (m, k, n) for case, m, k, n in fp8_gpu.FULL["gemms"]}
    assert full["square 4096"] == (4096,) * 3 and full["square 8192"] == (8192,) * 3
    # GPT-7B (Table 1: d 4096) at 8192 tokens: QKV, attention out, MLP up and down
    assert full["7B QKV"] == (8192, 4096, 12288) and full["7B attn out"] == (8192, 4096, 4096)
    assert full["7B MLP up"] == (8192, 4096, 11008) and full["7B MLP down"] == (8192, 11008, 4096)
    assert fp8_gpu.FULL["block"] == dict(d_model=4096, heads=32, mlp=11008, seq=2048, batch=2)
    for cfg in (fp8_gpu.FULL, fp8_gpu.QUICK):  # _scaled_mm needs dimensions divisible by 16
        assert all(d % 16 == 0 for _, *dims in cfg["gemms"] for d in dims)


@pytest.mark.skipif(not EFFICIENTVIT.exists(), reason="benchmarks/efficientvit_throughput.py "
                    "is written by another chapter")
def test_efficientvit_throughput_has_help():
    done = run_script(EFFICIENTVIT, "--help")
    assert done.returncode == 0, done.stderr
    assert "--out" in done.stdout


def test_every_measurement_runs_end_to_end_on_cpu_with_tiny_shapes(fp8_gpu, monkeypatch):
    """A dry run of the GPU code paths (device CPU, wall-clock timer, no CUDA memory counter):
    catches API mistakes that only the GPU machine would otherwise find."""
    import time

    import torch

    def wall_ms(fn, warmup, repeat):
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        return (time.perf_counter() - t0) * 1e3 / repeat

    monkeypatch.setattr(fp8_gpu, "DEVICE", "cpu")
    monkeypatch.setattr(fp8_gpu, "cuda_time_ms", wall_ms)
    for name in ("synchronize", "reset_peak_memory_stats", "empty_cache"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 2**30)
    cfg = dict(gemms=[("tiny", 32, 64, 48)], warmup=1, repeat=1, block_warmup=1,
               block_repeat=1, compile=False,
               block=dict(d_model=64, heads=4, mlp=176, seq=16, batch=2))
    rows = fp8_gpu.gemm_rows(cfg) + fp8_gpu.block_rows(cfg, compile_rows=False)
    errors = [(r["impl"], r["error"]) for r in rows if r["error"]]
    assert not errors
    gemm = {r["impl"]: r for r in rows if r["part"] == "a"}
    assert gemm["bf16 matmul"]["rel_err"] < 1e-2 < gemm["fp8 e4m3 _scaled_mm"]["rel_err"] < 0.1
    block = [r for r in rows if r["part"] == "b"]
    assert len(block) == 3 and all(r["ms"] > 0 and r["peak_mem_gib"] == 1.0 for r in block)
    # model FLOPs of a step, by hand: 3 x (2 x 32 tokens x (4·64² + 3·64·176) + 4·2·16²·64)
    assert block[0]["tflops"] * block[0]["ms"] * 1e9 == pytest.approx(3 * (2 * 32 * 50_176
                                                                           + 131_072))
    assert block[0]["vs_bf16"] == 1.0
    peer = [r for r in rows if r["part"] == "c"]
    assert len(peer) >= 1 and len({tuple(r) for r in rows}) == 1
    # the single-linear rows (bf16, ours reference / fast, torchao) and the training step
    cfg.update(linears=[(32, 64, 48)], llama=dict(model="tiny", batch=2, seq=16))
    extra = fp8_gpu.linear_rows(cfg, compile_rows=False) + fp8_gpu.fast_training_rows(cfg)
    assert not [(r["impl"], r["error"]) for r in extra if r["error"]]
    assert {r["part"] for r in extra} == {"d", "e"} and all(r["ms"] > 0 for r in extra)
