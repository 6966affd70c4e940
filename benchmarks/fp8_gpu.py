"""FP8 against BF16 on one GPU with FP8 tensor cores (FP8-LM, Peng et al., arXiv 2310.18313).

Three measurements, one table:

a) GEMM throughput: ``torch._scaled_mm`` E4M3 × E4M3 (bf16 output, per-tensor scales, the first
   operand row-major, the second column-major, as cuBLASLt requires) against bf16
   ``torch.matmul`` at 4096³, 8192³ and the four GEMMs of a GPT-7B layer (8192 tokens, d 4096:
   QKV 4096→12288, attention out 4096→4096, MLP up 4096→11008, MLP down 11008→4096). CUDA
   events, warm-up, the median of N calls; TFLOP/s = 2·M·N·K / time. The physical ceiling of the
   FP8 speed-up is 2× (H100 SXM dense: 989 bf16 vs 1979 FP8 TFLOP/s).
b) One transformer block (transformers ``LlamaDecoderLayer`` at GPT-7B width: d 4096, 32 heads,
   SwiGLU 11008; sequence 2048 × micro-batch 2): the time of one training step (forward,
   backward, AdamW step) and its peak memory (``torch.cuda.max_memory_allocated``), for bf16
   autocast + torch AdamW, our FP8 linears (``repro.fp8.convert``) + torch AdamW, and our O2
   (FP8 linears + ``repro.fp8.FP8AdamW``). Our FP8 path is a readable reference implementation:
   every cast computes its amax and scale on the host (a device sync), the optimizer is a Python
   loop that decodes and re-encodes each state; it is not fused kernels, and is expected to be
   slower than bf16 here. Speed is the paper's Table 5 claim for MS-AMP's fused kernels
   (Transformer Engine casts, a CUDA Adam), which this does not reproduce.
c) The peer: torchao's float8 training (``torchao.float8.convert_to_float8_training``,
   tensorwise scaling) on the same block, eager and under ``torch.compile``, with a compiled bf16
   baseline; a row saying it was skipped when ``import torchao`` fails.
d) One linear layer, forward + backward (M×K×N from 4096 to 16384; the issue's goal: ours
   ≥ 1.2× bf16 at 8192³, torchao reports 1.39× at 4096×8192×16384), every row with bf16
   weights and a bf16 input: bf16 ``nn.Linear``; ours, reference (host scales, statistics on);
   ours, fast path (device scales, no host sync, statistics off; eager and ``torch.compile``);
   torchao tensorwise (eager and compiled). TFLOP/s = 6·M·K·N / time; peak memory per row.
e) The fast path in training: the block of b) with our fast O2 (``convert(...,
   store_master=True, fast=True, stats=False)`` + ``FP8AdamW(fast=True)``) beside a bf16-weight
   baseline, and one training step of the chapter's tiny Llama (``repro.lm.train_gpt`` "tiny")
   in bf16 and in our fast O2.

    PYTHONPATH=src python benchmarks/fp8_gpu.py            # about 2-4 minutes on an H100
    PYTHONPATH=src python benchmarks/fp8_gpu.py --quick    # smaller shapes, about 30 s

Writes ``benchmarks/results/fp8_gpu.json`` (``{"command", "meta", "rows"}``; every row a flat
dict with the same keys), which the book renders as a table. A failing measurement becomes a row
whose ``error`` says why; the other rows are kept. Exits with status 2 and a message when there
is no CUDA GPU or its compute capability is below 8.9 (no FP8 tensor cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import shlex
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fp8_gpu.json"
COLUMNS = ("part", "case", "impl", "shape", "ms", "tflops", "vs_bf16", "peak_mem_gib",
           "rel_err", "note", "error")
OURS_NOTE = "reference FP8 linears: amax/scale on the host at every cast; not fused kernels"
OURS_O2_NOTE = OURS_NOTE + "; FP8AdamW: a Python loop decoding/re-encoding each state"
FAST_NOTE = "fast path: device scales, cached FP8 weight, no host sync, statistics off"
MIN_CAPABILITY = (8, 9)
DEVICE = "cuda"  # a CPU dry run of the code paths sets this to "cpu" (tests only)

# GPT-7B (Table 1: d 4096, 32 heads; SwiGLU 11008) — the GEMMs of one layer at 8192 tokens
D_7B, HEADS_7B, MLP_7B = 4096, 32, 11008
FULL = dict(gemms=[("square 4096", 4096, 4096, 4096), ("square 8192", 8192, 8192, 8192),
                   ("7B QKV", 8192, D_7B, 3 * D_7B), ("7B attn out", 8192, D_7B, D_7B),
                   ("7B MLP up", 8192, D_7B, MLP_7B), ("7B MLP down", 8192, MLP_7B, D_7B)],
            block=dict(d_model=D_7B, heads=HEADS_7B, mlp=MLP_7B, seq=2048, batch=2),
            warmup=5, repeat=20, block_warmup=3, block_repeat=10, compile=True,
            linears=[(4096, 4096, 4096), (8192, 8192, 8192), (4096, 8192, 16384),
                     (16384, 16384, 16384)],
            llama=dict(model="tiny", batch=64, seq=64))
QUICK = dict(gemms=[("square 2048", 2048, 2048, 2048), ("square 4096", 4096, 4096, 4096),
                    ("7B QKV", 2048, D_7B, 3 * D_7B), ("7B MLP down", 2048, MLP_7B, D_7B)],
             block=dict(d_model=2048, heads=16, mlp=5504, seq=1024, batch=1),
             warmup=3, repeat=10, block_warmup=2, block_repeat=5, compile=False,
             linears=[(4096, 4096, 4096), (8192, 8192, 8192)],
             llama=dict(model="tiny", batch=32, seq=64))


def log(msg: str) -> None:
    print(f"[fp8_gpu] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- CPU-safe parts
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Needs one CUDA GPU with compute capability >= 8.9.")
    p.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats (~30 s)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    p.add_argument("--repeat", type=int, default=None, help="timed calls per GEMM (median)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    return p.parse_args(argv)


def gpu_problem() -> str | None:
    """Why this machine cannot run the benchmark, or None when it can."""
    import torch

    if not torch.cuda.is_available():
        return ("fp8_gpu.py needs a CUDA GPU with FP8 tensor cores (compute capability >= 8.9: "
                "Ada, Hopper, Blackwell), but torch.cuda.is_available() is False "
                f"(torch {torch.__version__}, CUDA {torch.version.cuda}). Run it on a GPU "
                "machine: PYTHONPATH=src python benchmarks/fp8_gpu.py")
    cap = torch.cuda.get_device_capability(0)
    if cap < MIN_CAPABILITY:
        return (f"fp8_gpu.py needs FP8 tensor cores (compute capability >= 8.9), but "
                f"{torch.cuda.get_device_name(0)} has {cap[0]}.{cap[1]}")
    return None


def make_row(part: str, case: str, impl: str, shape: str = "", **values: Any) -> dict:
    """A row with every column of :data:`COLUMNS` (missing values None, note/error strings)."""
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(part=part, case=case, impl=impl, shape=shape, note="", error="")
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown columns {sorted(unknown)}")
    row.update(values)
    return row


def measured(row: dict, fn: Callable[[], dict]) -> dict:
    """``row`` updated with ``fn()``'s values, or with the error when it raises (the table keeps
    every other row)."""
    try:
        row.update(fn())
    except Exception as err:  # noqa: BLE001 — any failure becomes the row's error
        row["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        log(f"{row['case']} / {row['impl']} failed: {row['error']}")
        traceback.print_exc(file=sys.stderr)
    return row


def format_table(rows: list[dict], columns: tuple[str, ...] = COLUMNS) -> str:
    """Plain-text table; floats with 4 significant digits, None as '-'."""
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    table = [list(columns)] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
             for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def recorded_command(argv: list[str]) -> str:
    """The command line that reproduces the rows (``--out`` dropped: it only says where)."""
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not a.startswith("--out="):
            kept.append(a)
    return " ".join(shlex.quote(a) for a in ["python", "benchmarks/fp8_gpu.py", *kept])


def write_results(path: Path, command: str, meta: dict, rows: list[dict]) -> Path:
    """``{"command", "meta", "rows"}`` as JSON; every row must have the same keys."""
    keys = {tuple(r) for r in rows}
    if len(keys) > 1:
        raise ValueError(f"rows have different keys: {sorted(keys)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": command, "meta": meta, "rows": rows}, indent=1)
                    + "\n")
    return path


# ----------------------------------------------------------------------------- timing
def cuda_time_ms(fn: Callable[[], Any], warmup: int, repeat: int) -> float:
    """Median milliseconds of ``fn`` over ``repeat`` calls, each between two CUDA events."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def free_memory() -> None:
    import torch

    gc.collect()
    torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- a) GEMMs
def gemm_rows(cfg: dict) -> list[dict]:
    rows = []
    for case, m, k, n in cfg["gemms"]:
        log(f"GEMM {case} ({m}x{k}x{n})")
        rows += gemm_case(case, m, k, n, cfg)
        free_memory()
    return rows


def gemm_case(case: str, m: int, k: int, n: int, cfg: dict) -> list[dict]:
    """bf16 matmul and FP8 ``_scaled_mm`` (with and without fast accumulation) of one
    (M, K) × (K, N) product; relative error against an fp64 product of the same inputs."""
    import torch

    shape = f"{m}x{k}x{n}"
    flops = 2.0 * m * n * k
    state: dict[str, Any] = {}

    def setup() -> dict:
        g = torch.Generator(device=DEVICE).manual_seed(0)
        a = torch.randn(m, k, device=DEVICE, generator=g)
        b = torch.randn(k, n, device=DEVICE, generator=g)
        state["ref"] = (a.double() @ b.double()).float()
        state["a16"], state["b16"] = a.bfloat16(), b.bfloat16()
        # per-tensor power-of-two scales: amax · s just below the E4M3 maximum (448)
        sa = 2.0 ** torch.floor(torch.log2(448.0 / a.abs().max()))
        sb = 2.0 ** torch.floor(torch.log2(448.0 / b.abs().max()))
        state["a8"] = (a * sa).to(torch.float8_e4m3fn)  # (M, K) row-major
        state["b8"] = (b.t().contiguous() * sb).to(torch.float8_e4m3fn).t()  # column-major
        state["ia"], state["ib"] = (1.0 / sa).float(), (1.0 / sb).float()  # inverse scales
        return {}

    def rel_err(out) -> float:
        ref = state["ref"]
        return float((out.float() - ref).norm() / ref.norm())

    def bf16() -> dict:
        def fn():
            return torch.matmul(state["a16"], state["b16"])
        ms = cuda_time_ms(fn, cfg["warmup"], cfg["repeat"])
        state["bf16_ms"] = ms
        return dict(ms=ms, tflops=flops / ms / 1e9, vs_bf16=1.0, rel_err=rel_err(fn()))

    def fp8(fast: bool) -> Callable[[], dict]:
        def run() -> dict:
            def fn():
                return torch._scaled_mm(state["a8"], state["b8"], scale_a=state["ia"],
                                        scale_b=state["ib"], out_dtype=torch.bfloat16,
                                        use_fast_accum=fast)
            ms = cuda_time_ms(fn, cfg["warmup"], cfg["repeat"])
            ref_ms = state.get("bf16_ms")
            return dict(ms=ms, tflops=flops / ms / 1e9,
                        vs_bf16=ref_ms / ms if ref_ms else None, rel_err=rel_err(fn()))
        return run

    prepared = measured(make_row("a", case, "setup", shape), setup)
    if prepared["error"]:
        return [prepared]
    rows = [measured(make_row("a", case, "bf16 matmul", shape), bf16),
            measured(make_row("a", case, "fp8 e4m3 _scaled_mm", shape,
                              note="ceiling 2x bf16"), fp8(False)),
            measured(make_row("a", case, "fp8 e4m3 _scaled_mm fast-accum", shape,
                              note="accumulation at tensor-core precision"), fp8(True))]
    state.clear()
    return rows


# ----------------------------------------------------------------------------- b, c) block
def make_block(spec: dict, dtype=None):
    """A LlamaDecoderLayer, its rotary (cos, sin) and a random input (batch, seq, d)."""
    import torch
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    config = LlamaConfig(hidden_size=spec["d_model"], intermediate_size=spec["mlp"],
                         num_attention_heads=spec["heads"], num_key_value_heads=spec["heads"],
                         num_hidden_layers=1, max_position_embeddings=spec["seq"],
                         attention_bias=False, mlp_bias=False, attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(DEVICE):
        layer = LlamaDecoderLayer(config, layer_idx=0)
        rotary = LlamaRotaryEmbedding(config=config)
    if dtype is not None:
        layer.to(dtype)
    x = torch.randn(spec["batch"], spec["seq"], spec["d_model"], device=DEVICE,
                    dtype=dtype or torch.float32)
    position_ids = torch.arange(spec["seq"], device=DEVICE)[None].expand(spec["batch"], -1)
    cos_sin = rotary(x, position_ids)
    return layer, x, position_ids, cos_sin


def block_step_fn(layer, optimizer, x, position_ids, cos_sin, autocast: bool):
    import torch

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=autocast):
            out = layer(hidden_states=x, position_ids=position_ids, position_embeddings=cos_sin)
            out = out[0] if isinstance(out, tuple) else out
            loss = out.float().pow(2).mean()
        loss.backward()
        optimizer.step()

    return step


def block_flops(spec: dict) -> float:
    """Model FLOPs of one training step (forward + backward = 3 × forward): the linears,
    2 · tokens · (4·d² + 3·d·mlp) per forward, and attention's two (seq × seq) products,
    4 · batch · seq² · d, counted without the causal half (as MFU is usually counted)."""
    d, tokens = spec["d_model"], spec["batch"] * spec["seq"]
    linears = 2 * tokens * (4 * d * d + 3 * d * spec["mlp"])
    attention = 4 * spec["batch"] * spec["seq"] ** 2 * d
    forward = linears + attention
    return 3.0 * forward


def measure_block(build: Callable[[], tuple], cfg: dict) -> dict:
    """Build (layer, optimizer, x, position ids, (cos, sin), autocast), time a training step,
    record the peak memory of the timed steps."""
    import torch

    free_memory()
    layer, optimizer, x, pos, cos_sin, autocast = build()
    step = block_step_fn(layer, optimizer, x, pos, cos_sin, autocast)
    for _ in range(cfg["block_warmup"]):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    ms = cuda_time_ms(step, 0, cfg["block_repeat"])
    peak = torch.cuda.max_memory_allocated() / 2**30
    del layer, optimizer, x, step
    free_memory()
    return dict(ms=ms, tflops=block_flops(cfg["block"]) / ms / 1e9, peak_mem_gib=peak)


def block_rows(cfg: dict, compile_rows: bool) -> list[dict]:
    import torch

    spec = cfg["block"]
    shape = (f"d{spec['d_model']} h{spec['heads']} mlp{spec['mlp']} "
             f"seq{spec['seq']}x{spec['batch']}")
    case = "LlamaDecoderLayer train step"
    rows: list[dict] = []

    def adamw(layer):
        try:
            return torch.optim.AdamW(layer.parameters(), lr=1e-4, betas=(0.9, 0.95),
                                     weight_decay=0.1, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.AdamW(layer.parameters(), lr=1e-4, betas=(0.9, 0.95),
                                     weight_decay=0.1)

    def bf16():
        layer, x, pos, cs = make_block(spec)
        return layer, adamw(layer), x, pos, cs, True

    def ours_o1():
        from repro.fp8 import convert

        layer, x, pos, cs = make_block(spec)
        convert(layer, "O1")
        return layer, adamw(layer), x, pos, cs, True

    def ours_o2():
        from repro.fp8 import FP8AdamW, convert
        from repro.fp8.linear import FP8Linear

        layer, x, pos, cs = make_block(spec)
        convert(layer, "O2")
        fp8_ids = {id(m.weight) for m in layer.modules() if isinstance(m, FP8Linear)}
        groups = [{"params": [p for p in layer.parameters() if id(p) in fp8_ids]},
                  {"params": [p for p in layer.parameters() if id(p) not in fp8_ids],
                   "weight_decay": 0.0, "master_format": "fp32", "exp_avg_format": "fp32",
                   "exp_avg_sq_format": "fp32", "grad_format": None}]
        opt = FP8AdamW.from_level(groups, "O2", lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
        return layer, opt, x, pos, cs, True

    variants = [("bf16 autocast + AdamW", bf16, "fp32 weights, bf16 GEMMs (baseline)"),
                ("ours: FP8 linears + AdamW (O1 GEMMs)", ours_o1, OURS_NOTE),
                ("ours: O2 (FP8 linears + FP8AdamW)", ours_o2, OURS_O2_NOTE)]
    for impl, build, note in variants:
        log(f"block: {impl}")
        rows.append(measured(make_row("b", case, impl, shape, note=note),
                             lambda build=build: measure_block(build, cfg)))

    # c) torchao, the peer
    try:
        import torchao
        from torchao.float8 import convert_to_float8_training
    except Exception as err:  # noqa: BLE001 — ImportError, or a torchao/torch mismatch
        rows.append(make_row("c", case, "torchao float8", shape,
                             note=f"skipped: torchao unavailable ({type(err).__name__}: {err})"
                             [:200]))
        _add_speedups(rows)
        return rows
    version = getattr(torchao, "__version__", "?")

    def ao(compiled: bool):
        def build():
            layer, x, pos, cs = make_block(spec, dtype=torch.bfloat16)
            convert_to_float8_training(layer)
            opt = adamw(layer)
            return (torch.compile(layer) if compiled else layer), opt, x, pos, cs, False
        return build

    def bf16_compiled():
        layer, x, pos, cs = make_block(spec, dtype=torch.bfloat16)
        return torch.compile(layer), adamw(layer), x, pos, cs, False

    peer = [(f"torchao {version} float8 tensorwise (eager)", ao(False), "bf16 weights")]
    if compile_rows:
        peer += [("bf16 weights (torch.compile)", bf16_compiled, "baseline of the compiled row"),
                 (f"torchao {version} float8 tensorwise (torch.compile)", ao(True),
                  "bf16 weights")]
    for impl, build, note in peer:
        log(f"block: {impl}")
        rows.append(measured(make_row("c", case, impl, shape, note=note),
                             lambda build=build: measure_block(build, cfg)))
    _add_speedups(rows)
    return rows


def _add_speedups(rows: list[dict]) -> None:
    """vs_bf16 = bf16 step time / this step time (the eager bf16 row; the compiled bf16 row for
    compiled torchao)."""
    eager = next((r["ms"] for r in rows if r["impl"].startswith("bf16 autocast")), None)
    compiled = next((r["ms"] for r in rows if r["impl"] == "bf16 weights (torch.compile)"), None)
    for r in rows:
        ref = compiled if "torch.compile" in r["impl"] else eager
        if r["ms"] and ref:
            r["vs_bf16"] = ref / r["ms"]


# ----------------------------------------------------------------------------- d) one linear
def linear_rows(cfg: dict, compile_rows: bool) -> list[dict]:
    """Forward + backward of one bias-free linear layer, bf16 weights and input, per shape."""
    import torch

    rows: list[dict] = []

    def bf16(k, n):
        return torch.nn.Linear(k, n, bias=False, device=DEVICE, dtype=torch.bfloat16)

    def ours(k, n, fast, stats):
        from repro.fp8.linear import FP8Linear

        return FP8Linear(k, n, bias=False, fast=fast, stats=stats, device=DEVICE,
                         dtype=torch.bfloat16)

    def torchao(k, n):
        from repro.fp8.torchao_backend import convert_torchao

        return convert_torchao(torch.nn.Sequential(bf16(k, n)))

    impls = [("bf16 nn.Linear", bf16, False, "bf16 weights (baseline)"),
             ("ours reference (stats on)", lambda k, n: ours(k, n, False, True), False,
              OURS_NOTE),
             ("ours fast (stats off)", lambda k, n: ours(k, n, True, False), False, FAST_NOTE),
             ("torchao float8 tensorwise", torchao, False, "bf16 weights")]
    if compile_rows:
        impls += [("bf16 nn.Linear (torch.compile)", bf16, True, "baseline of compiled rows"),
                  ("ours fast (torch.compile)", lambda k, n: ours(k, n, True, False), True,
                   FAST_NOTE),
                  ("torchao float8 tensorwise (torch.compile)", torchao, True, "bf16 weights")]
    for m, k, n in cfg["linears"]:
        shape = f"{m}x{k}x{n}"
        for impl, build, compiled, note in impls:
            log(f"linear {shape}: {impl}")

            def run(build=build, compiled=compiled, m=m, k=k, n=n):
                free_memory()
                layer = build(k, n)
                fn = torch.compile(layer) if compiled else layer
                x = torch.randn(m, k, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
                grad = torch.randn(m, n, device=DEVICE, dtype=torch.bfloat16)

                def step():
                    fn(x).backward(grad)
                    layer.zero_grad(set_to_none=True)
                    for mod in layer.modules():  # a stored FP8 gradient, if any
                        if hasattr(mod, "weight_grad"):
                            mod.weight_grad = None
                    x.grad = None

                for _ in range(cfg["warmup"]):
                    step()
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                ms = cuda_time_ms(step, 0, cfg["repeat"])
                peak = torch.cuda.max_memory_allocated() / 2**30
                return dict(ms=ms, tflops=6 * m * k * n / ms / 1e9, peak_mem_gib=peak)

            rows.append(measured(make_row("d", "linear fwd+bwd", impl, shape, note=note), run))
    base = {(r["shape"], "torch.compile" in r["impl"]): r["ms"] for r in rows
            if r["impl"].startswith("bf16 nn.Linear") and r["ms"]}
    for r in rows:
        ref = base.get((r["shape"], "torch.compile" in r["impl"]))
        if r["ms"] and ref:
            r["vs_bf16"] = ref / r["ms"]
    return rows


# ----------------------------------------------------------------------------- e) fast path
def fast_training_rows(cfg: dict) -> list[dict]:
    """The block of b) with bf16 weights and with our fast O2, and a tiny-Llama step."""
    import torch

    spec = cfg["block"]
    shape = (f"d{spec['d_model']} h{spec['heads']} mlp{spec['mlp']} "
             f"seq{spec['seq']}x{spec['batch']}")
    rows: list[dict] = []

    def bf16_weights():
        layer, x, pos, cs = make_block(spec, dtype=torch.bfloat16)
        return layer, torch.optim.AdamW(layer.parameters(), lr=1e-4), x, pos, cs, False

    def fast_o2():
        from repro.fp8 import FP8AdamW, convert
        from repro.fp8.optim import param_groups

        layer, x, pos, cs = make_block(spec, dtype=torch.bfloat16)
        convert(layer, "O2", store_master=True, fast=True, stats=False)
        opt = FP8AdamW.from_level(param_groups(layer, 0.1, fp8=True), "O2", lr=1e-4,
                                  betas=(0.9, 0.95), fast=True)
        return layer, opt, x, pos, cs, False

    for impl, build, note in [("bf16 weights + AdamW (eager)", bf16_weights, "baseline"),
                              ("ours fast O2 (stored FP16 master, FP8AdamW fast)", fast_o2,
                               FAST_NOTE)]:
        log(f"block: {impl}")
        rows.append(measured(make_row("e", "LlamaDecoderLayer train step", impl, shape,
                                      note=note), lambda build=build: measure_block(build, cfg)))

    def llama_step(precision: str) -> dict:
        from repro.fp8 import FP8AdamW, convert
        from repro.fp8.optim import param_groups
        from repro.lm.model import lm_loss
        from repro.lm.train_gpt import MODELS, build_model

        spec_l = cfg["llama"]
        free_memory()
        model = build_model(MODELS[spec_l["model"]], 256, seq_len=spec_l["seq"], seed=0,
                            device=DEVICE)
        if precision == "bf16":
            model.to(torch.bfloat16)
            opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)
        else:
            model.to(torch.bfloat16)
            convert(model, "O2", skip=["lm_head"], store_master=True, fast=True, stats=False)
            opt = FP8AdamW.from_level(param_groups(model, 0.1, fp8=True), "O2", lr=1e-3,
                                      fast=True)
        gen = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randint(0, 256, (spec_l["batch"], spec_l["seq"]), generator=gen).to(DEVICE)

        def step():
            opt.zero_grad(set_to_none=True)
            lm_loss(model, (x, x)).backward()
            opt.step()

        for _ in range(cfg["block_warmup"]):
            step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        ms = cuda_time_ms(step, 0, cfg["block_repeat"])
        return dict(ms=ms, peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30)

    llama_shape = f"{cfg['llama']['model']} batch{cfg['llama']['batch']}x{cfg['llama']['seq']}"
    for impl, precision, note in [("bf16 weights + AdamW", "bf16", "baseline"),
                                  ("ours fast O2", "fp8", FAST_NOTE)]:
        log(f"tiny Llama: {impl}")
        rows.append(measured(make_row("e", "tiny Llama train step", impl, llama_shape,
                                      note=note), lambda p=precision: llama_step(p)))
    for case in {r["case"] for r in rows}:
        base = next((r["ms"] for r in rows if r["case"] == case and r["note"] == "baseline"),
                    None)
        for r in rows:
            if r["case"] == case and r["ms"] and base:
                r["vs_bf16"] = base / r["ms"]
    return rows


# ----------------------------------------------------------------------------- main
def meta_info(quick: bool) -> dict:
    import torch

    info = {"gpu": torch.cuda.get_device_name(0),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "quick": quick}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    return info


def _import_repro() -> None:
    """``repro`` from this checkout when it is not installed (``PYTHONPATH=src`` not set)."""
    try:
        import repro  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = gpu_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    _import_repro()
    cfg = dict(QUICK if args.quick else FULL)
    if args.repeat:
        cfg["repeat"] = args.repeat
    t0 = time.perf_counter()
    meta = meta_info(args.quick)
    log(f"{meta['gpu']} (sm {meta['capability']}), torch {meta['torch']}, CUDA {meta['cuda']}")
    rows = gemm_rows(cfg)
    log(f"GEMMs done in {time.perf_counter() - t0:.0f} s")
    rows += block_rows(cfg, compile_rows=cfg["compile"] and not args.no_compile)
    rows += linear_rows(cfg, compile_rows=cfg["compile"] and not args.no_compile)
    rows += fast_training_rows(cfg)
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    command = recorded_command(sys.argv[1:] if argv is None else argv)
    path = write_results(args.out, command, meta, rows)
    print(format_table(rows))
    log(f"wrote {path} in {meta['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
