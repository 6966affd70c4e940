"""Code paths that only full scale uses on GPUs: FP8 tensor-core GEMMs, the NCCL-free CUDA
optimizer path, EfficientViT on CUDA. Skipped without CUDA (CI has none); run them on a GPU
machine with `pytest -m gpu tests/gpu`."""

from __future__ import annotations

import copy

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _fp8_tensor_cores() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)


@pytest.mark.skipif(not _fp8_tensor_cores(), reason="needs FP8 tensor cores (sm >= 8.9)")
def test_scaled_mm_on_tensor_cores_matches_the_dequantised_product():
    from repro.fp8.formats import quantize
    from repro.fp8.linear import fp8_gemm

    gen = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(256, 512, device="cuda", generator=gen)
    b = torch.randn(512, 128, device="cuda", generator=gen)
    qa, qb = quantize(a, "e4m3", 64.0), quantize(b, "e4m3", 64.0)
    fast = fp8_gemm(qa, 64.0, qb, 64.0, torch.float32, gemm="scaled_mm")
    ref = fp8_gemm(qa, 64.0, qb, 64.0, torch.float32, gemm="dequant")
    torch.testing.assert_close(fast, ref, rtol=1e-3, atol=1e-3)  # cuBLAS accumulation order


@pytest.mark.skipif(not _fp8_tensor_cores(), reason="needs FP8 tensor cores (sm >= 8.9)")
def test_fp8_linear_trains_on_cuda_close_to_fp32():
    from repro.fp8 import convert

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 16)).cuda()
    ref = copy.deepcopy(model)
    convert(model, "O1", gemm="scaled_mm")
    x = torch.randn(32, 64, device="cuda")
    rel = (model(x) - ref(x)).norm() / ref(x).norm()
    assert rel < 0.1
    model(x).square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_fp8_adamw_all_fp32_matches_torch_adamw_on_cuda():
    from repro.fp8 import FP8AdamW

    torch.manual_seed(0)
    w1 = torch.nn.Parameter(torch.randn(32, 32, device="cuda"))
    w2 = torch.nn.Parameter(w1.detach().clone())
    ours = FP8AdamW([w1], lr=1e-2, master_format="fp32", exp_avg_format="fp32",
                    exp_avg_sq_format="fp32")
    theirs = torch.optim.AdamW([w2], lr=1e-2)
    for _ in range(5):
        for w, opt in ((w1, ours), (w2, theirs)):
            opt.zero_grad()
            (w.square().sum()).backward()
            opt.step()
    torch.testing.assert_close(w1, w2)


def test_efficientvit_m0_runs_on_cuda_like_on_cpu():
    from repro.vision.efficientvit import create_model

    model = create_model("efficientvit_m0").eval()
    x = torch.randn(2, 3, 224, 224)
    cpu = model(x)
    gpu = model.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3)


def test_efficientvit_gpu_benchmark_measures_under_amp_on_cuda():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "efficientvit_gpu.py"
    spec = importlib.util.spec_from_file_location("efficientvit_gpu", path)
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    args = gpu.parse_args(["--batch", "64", "--warmup", "2", "--rounds", "2", "--repeat", "2"])
    rows = {r["model"]: r for r in gpu.measure(["efficientvit_m0", "mobilenetv3_large_100"],
                                                args)}
    assert rows["efficientvit_m0"]["error"] == "" and rows["efficientvit_m0"]["img_per_s"] > 0
    assert rows["mobilenetv3_large_100"]["vs_mnv3_large"] == 1.0


@pytest.mark.skipif(not _fp8_tensor_cores(), reason="needs FP8 tensor cores (sm >= 8.9)")
def test_fast_fp8_linear_on_tensor_cores_matches_the_reference_and_never_syncs():
    from torch.profiler import ProfilerActivity, profile

    from repro.fp8 import FP8AdamW, convert

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(256, 512, bias=False), torch.nn.ReLU(),
                               torch.nn.Linear(512, 128, bias=False)).cuda()
    ref, fast = copy.deepcopy(base), copy.deepcopy(base)
    convert(ref, "O2", store_master=True, gemm="dequant")
    convert(fast, "O2", store_master=True, fast=True, stats=False, gemm="scaled_mm")
    opts = [FP8AdamW.from_level(m.parameters(), "O2") for m in (ref,)] + [
        FP8AdamW.from_level(fast.parameters(), "O2", fast=True)]
    x = torch.randn(64, 256, device="cuda")
    for model, opt in zip((ref, fast), opts, strict=True):
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
    # scaled_mm accumulates in another order (and fast accumulation in the forward GEMM)
    torch.testing.assert_close(fast(x), ref(x), rtol=2e-2, atol=2e-2)
    torch.cuda.synchronize()

    def step():
        fast(x).square().mean().backward()
        opts[1].step()
        opts[1].zero_grad()

    step()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
    assert sum(e.count for e in prof.key_averages() if e.key == "aten::_local_scalar_dense") == 0


def test_stored_master_o2_holds_six_bytes_per_weight_on_cuda():
    from repro.fp8 import FP8AdamW, convert
    from repro.fp8.memory import held_bytes

    model = torch.nn.Sequential(torch.nn.Linear(1024, 1024, bias=False)).cuda()
    convert(model, "O2", store_master=True, fast=True, stats=False)
    opt = FP8AdamW.from_level(model.parameters(), "O2", fast=True)
    model(torch.randn(8, 1024, device="cuda")).square().mean().backward()
    opt.step()
    assert held_bytes(model, opt).fp8_linear_bytes_per_param < 6.01
