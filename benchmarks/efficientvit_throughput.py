"""CPU throughput of EfficientViT M0-M5 against MobileNetV3 and MobileViT-XXS.

The paper's CPU protocol (Liu et al., CVPR 2023, Sec. 4.1; ``speed_test.py`` of the official
code): one thread, batch 16, 224 x 224 images, eval mode, BatchNorm folded into the convs of our
models. All models are timed in the same process, round-robin over several rounds (so that the
noise of a shared machine hits every model alike), and the median call is kept. Weights are
random: speed does not depend on them.

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
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "efficientvit_throughput.json"
OURS = [f"efficientvit_m{i}" for i in range(6)]
BASELINES = ["mobilenetv3_large_100", "mobilevit_xxs", "mobilenetv3_small_100"]


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


def build_models(names: list[str]):
    """Our variants with BN folded (the paper's protocol), timm's baselines as they come.

    Returns ``{name: (model, parameters of the unfolded model)}``.
    """
    import timm

    from repro.vision import efficientvit as ev

    models = {}
    for name in names:
        if name in ev.VARIANTS:
            model = ev.create_model(name)
            models[name] = (ev.fold_batchnorm(model), ev.count_params(model))
        else:
            model = timm.create_model(name, pretrained=False).eval()
            models[name] = (model, ev.count_params(model))
    return models


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

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]  # other jobs on the machine; recorded with the results
    models = build_models(args.models)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution)
    with torch.inference_mode():
        timings = bench.interleaved({name: (lambda m=m: m(x)) for name, (m, _) in models.items()},
                                    items_per_call=args.batch, rounds=args.rounds, warmup=2,
                                    repeat=args.repeat)
    speed = {name: t.throughput for name, t in timings.items()}
    rows = []
    for name, (_, params) in models.items():
        row = {"model": name, "params_M": round(params / 1e6, 2),
               "img_per_s": round(speed[name], 1)}
        for key, base in (("vs_mnv3_large", "mobilenetv3_large_100"),
                          ("vs_mobilevit_xxs", "mobilevit_xxs")):
            row[key] = round(speed[name] / speed[base], 2) if base in speed else None
        rows.append(row)
    print(bench.format_table(rows))

    command = recorded_command(argv if argv is not None else sys.argv[1:])
    doc = {
        "command": command,
        "meta": {
            "torch": torch.__version__.split("+")[0],
            "threads": args.threads,
            "batch": args.batch,
            "resolution": args.resolution,
            "rounds": f"{args.rounds} x {args.repeat} calls, median",
            "date": dt.date.today().isoformat(),
            "cpu": cpu_model(),
            "load_avg_1min": round(load_before, 2),
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
