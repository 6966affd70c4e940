"""GPU throughput of EfficientViT M0-M5 against MobileNetV3-Large and MobileViT-XXS.

The paper's GPU protocol (Liu et al., CVPR 2023, Sec. 4.1; ``speed_test.py`` of the official
code): batch 2048 (here: 2048, halved until it fits in memory, the batch recorded per row),
224 x 224, eval mode, BatchNorm folded, fp16 autocast (AMP), a warm-up, then the median of
timed calls (CUDA events). Every model, the baselines included, is BN-folded
(``repro.vision.efficientvit.fold_batchnorm``; for timm's baselines with an example input).
Models are timed round-robin, the order reversed every other round. Weights are random.

It measures the three GPU claims of ``notebooks/efficientvit/claims.yaml``: M5 /
MobileNetV3-Large (paper: 1.404 on a V100), M2 / MobileViT-XXS (5.8) and M0's images/s
(27,644 on a V100; absolute numbers depend on the GPU).

    PYTHONPATH=src python benchmarks/efficientvit_gpu.py            # a few minutes on one GPU
    PYTHONPATH=src python benchmarks/efficientvit_gpu.py --quick    # batch 256, fewer calls

Writes ``benchmarks/results/efficientvit_gpu.json`` (``{"command", "meta", "rows"}``, flat rows
with the same keys), which the book renders as a table. A model that fails becomes a row whose
``error`` says why. Exits with status 2 and a message when there is no CUDA GPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "efficientvit_gpu.json"
MODELS = [f"efficientvit_m{i}" for i in range(6)] + ["mobilenetv3_large_100", "mobilevit_xxs"]
COLUMNS = ("model", "batch", "img_per_s", "img_per_s_min", "img_per_s_max", "vs_mnv3_large",
           "vs_mobilevit_xxs", "error")
DEVICE = "cuda"  # the CPU dry run of the tests sets "cpu"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--batch", type=int, default=2048, help="largest batch tried (halved on OOM)")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per model")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeat", type=int, default=10, help="timed calls per model per round")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 instead of AMP")
    p.add_argument("--quick", action="store_true", help="batch 256, 2 rounds x 5 calls")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.rounds, args.repeat, args.warmup = min(args.batch, 256), 2, 5, 3
    return args


def build(name: str, resolution: int):
    """The BN-folded model in eval mode (on the CPU; moved by the caller)."""
    import timm
    import torch

    from repro.vision import efficientvit as ev

    if name in ev.VARIANTS:
        return ev.fold_batchnorm(ev.create_model(name))
    model = timm.create_model(name, pretrained=False).eval()
    return ev.fold_batchnorm(model, torch.randn(1, 3, resolution, resolution))


def fitting_batch(model, largest: int, resolution: int, amp: bool) -> int:
    """The largest batch (largest, largest / 2, ...) whose forward pass fits in memory."""
    import torch

    batch = largest
    while True:
        try:
            x = torch.randn(batch, 3, resolution, resolution, device=DEVICE)
            with torch.inference_mode(), torch.autocast(DEVICE, torch.float16, enabled=amp):
                model(x)
            return batch
        except torch.OutOfMemoryError:
            if batch == 1:
                raise
            batch //= 2
            if DEVICE == "cuda":
                torch.cuda.empty_cache()


def time_call(fn) -> float:
    """Seconds of one call (CUDA events on the GPU, perf_counter on the CPU)."""
    import torch

    if DEVICE != "cuda":
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3


def measure(names: list[str], args: argparse.Namespace) -> list[dict]:
    """One row per model (see ``COLUMNS``)."""
    import torch

    calls, batches, errors = {}, {}, {}
    for name in names:
        try:
            model = build(name, args.resolution).to(DEVICE)
            batch = fitting_batch(model, args.batch, args.resolution, args.amp)
            x = torch.randn(batch, 3, args.resolution, args.resolution, device=DEVICE)

            def call(m=model, x=x):
                with torch.inference_mode(), torch.autocast(DEVICE, torch.float16,
                                                            enabled=args.amp):
                    m(x)

            for _ in range(args.warmup):
                call()
            calls[name], batches[name] = call, batch
        except Exception as err:  # noqa: BLE001 -- one failing model must not lose the others
            errors[name] = f"{type(err).__name__}: {err}"[:300]
    seconds = {name: [] for name in calls}
    order = list(calls)
    for r in range(args.rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            seconds[name] += [time_call(calls[name]) for _ in range(args.repeat)]
    speed = {n: batches[n] / statistics.median(s) for n, s in seconds.items()}
    rows = []
    for name in names:
        row = dict.fromkeys(COLUMNS)
        row["model"] = name
        if name in errors:
            row["error"] = errors[name]
        else:
            rates = [batches[name] / s for s in seconds[name]]
            row.update(batch=batches[name], img_per_s=round(speed[name], 1),
                       img_per_s_min=round(min(rates), 1), img_per_s_max=round(max(rates), 1),
                       error="")
            for key, base in (("vs_mnv3_large", "mobilenetv3_large_100"),
                              ("vs_mobilevit_xxs", "mobilevit_xxs")):
                if base in speed:
                    row[key] = round(speed[name] / speed[base], 3)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("efficientvit_gpu.py needs a CUDA GPU (none found); the committed CPU numbers "
              "are in benchmarks/results/efficientvit_throughput.json", file=sys.stderr)
        return 2
    from repro import bench
    from repro.io import atomic_write_text

    torch.backends.cudnn.benchmark = True  # as speed_test.py
    t0 = time.perf_counter()
    rows = measure(args.models, args)
    print(bench.format_table(rows))
    gpu = torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE
    kept = [shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])]
    doc = {"command": " ".join(["python benchmarks/efficientvit_gpu.py", *kept]),
           "meta": {"torch": torch.__version__.split("+")[0], "gpu": gpu,
                    "amp": "fp16 autocast" if args.amp else "off (fp32)",
                    "resolution": args.resolution,
                    "timing": f"{args.warmup} warm-up calls, {args.rounds} rounds x "
                              f"{args.repeat} calls, median (min-max beside it)",
                    "date": dt.date.today().isoformat(),
                    "paper": "V100: M0 27,644 img/s; M5 / MNv3-L 1.404; M2 / MobileViT-XXS 5.8",
                    "wall_s": round(time.perf_counter() - t0, 1)},
           "rows": rows}
    atomic_write_text(args.out, json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
