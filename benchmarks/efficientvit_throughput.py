"""CPU throughput of EfficientViT M0-M5 against MobileNetV3 and MobileViT-XXS.

The paper's CPU protocol (Liu et al., CVPR 2023, Sec. 4.1; ``speed_test.py`` of the official
code): one thread, batch 16, 224 x 224 images, eval mode, BatchNorm folded into the convs.
Every model is timed twice, BN-folded (ours with ``fold_batchnorm``, the baselines' conv + BN
pairs found by running one image through ``fold_batchnorm(model, example)``) and unfolded, so
that neither side gets the folding alone. All models run in one process, round-robin, and the
order alternates between rounds (forward, then reversed) so that neither end of the list
always runs first after a pause. Per model we keep the median call and the spread (min-max
images/s over all calls), and the 1-minute load average of the machine while it ran: on a
shared machine these numbers are only as good as that load. Weights are random: speed does
not depend on them.

    python benchmarks/efficientvit_throughput.py [--rounds 8] [--repeat 2] [--out PATH]

Writes ``benchmarks/results/efficientvit_throughput.json``, which the book renders as a table.
Absolute images/s depend on the machine; compare the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "efficientvit_throughput.json"
OURS = [f"efficientvit_m{i}" for i in range(6)]
BASELINES = ["mobilenetv3_large_100", "mobilevit_xxs", "mobilenetv3_small_100"]
UNDER_LOAD = 1.5  # 1-min load average above which a 1-thread timing shares its core


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def recorded_command(argv: list[str]) -> str:
    """The command line that reproduces the results, without where they were written."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            kept.append(shlex.quote(arg))
    return " ".join(["python benchmarks/efficientvit_throughput.py", *kept])


def build_models(names: list[str], example):
    """``{(name, "folded" | "unfolded"): model}`` and ``{name: parameters (unfolded)}``."""
    import timm

    from repro.vision import efficientvit as ev

    models, params = {}, {}
    for name in names:
        if name in ev.VARIANTS:
            model = ev.create_model(name).eval()
            folded = ev.fold_batchnorm(model)
        else:
            model = timm.create_model(name, pretrained=False).eval()
            folded = ev.fold_batchnorm(model, example[:1])
        models[(name, "folded")], models[(name, "unfolded")] = folded, model
        params[name] = ev.count_params(model)
    return models, params


def time_rounds(calls: dict, rounds: int, repeat: int, warmup: int = 2):
    """Round-robin timing, order reversed every other round. Returns per key the seconds of
    each call and the load average sampled after each of its rounds."""
    from repro import bench

    for fn in calls.values():
        for _ in range(warmup):
            fn()
    seconds = {key: [] for key in calls}
    loads = {key: [] for key in calls}
    keys = list(calls)
    for r in range(rounds):
        for key in (keys if r % 2 == 0 else keys[::-1]):
            seconds[key] += bench.time_call(calls[key], warmup=0, repeat=repeat)
            loads[key].append(os.getloadavg()[0])
    return seconds, loads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=OURS + BASELINES)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="calls per model per round")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    from repro import bench
    from repro.io import atomic_write_text

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    x = torch.randn(args.batch, 3, args.resolution, args.resolution)
    models, params = build_models(args.models, x)
    with torch.inference_mode():
        seconds, loads = time_rounds({key: (lambda m=m: m(x)) for key, m in models.items()},
                                     args.rounds, args.repeat)
    speed = {key: args.batch / statistics.median(s) for key, s in seconds.items()}
    rows = []
    for (name, bn), calls in seconds.items():
        rate = [args.batch / s for s in calls]
        row = {"model": name, "bn": bn, "params_M": round(params[name] / 1e6, 2),
               "img_per_s": round(speed[(name, bn)], 1), "img_per_s_min": round(min(rate), 1),
               "img_per_s_max": round(max(rate), 1)}
        for key, base in (("vs_mnv3_large", "mobilenetv3_large_100"),
                          ("vs_mobilevit_xxs", "mobilevit_xxs")):
            ref = speed.get((base, bn))
            row[key] = round(speed[(name, bn)] / ref, 2) if ref else None
        row["load_avg_1min"] = round(statistics.median(loads[(name, bn)]), 2)
        rows.append(row)
    rows.sort(key=lambda r: (r["bn"] != "folded", r["model"] not in OURS, r["model"]))
    print(bench.format_table(rows))

    load_end = os.getloadavg()[0]
    peak = max(max(v) for v in loads.values())
    cores = os.cpu_count() or 1
    doc = {
        "command": recorded_command(argv if argv is not None else sys.argv[1:]),
        "meta": {
            "torch": torch.__version__.split("+")[0],
            "threads": args.threads,
            "batch": args.batch,
            "resolution": args.resolution,
            "rounds": f"{args.rounds} x {args.repeat} calls, median (min-max beside it), "
                      "order reversed every other round",
            "date": dt.date.today().isoformat(),
            "cpu": f"{cpu_model()} ({cores} cores)",
            "load_avg_1min": f"{load_start:.2f} at start, {load_end:.2f} at end, "
                             f"peak {peak:.2f}",
            "under_load": (f"yes: measured while other jobs ran (load above {UNDER_LOAD}); "
                           "absolute images/s are low and noisy, ratios less so")
            if peak > UNDER_LOAD else "no",
            "wall_s": round(time.perf_counter() - t0, 1),
        },
        "rows": rows,
    }
    atomic_write_text(args.out, json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
