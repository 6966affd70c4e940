"""A-CLIP's efficiency lever: images/s and FLOPs of a ViT image tower against the keep ratio.

Forward pass of open_clip's VisionTransformer on [CLS] + the kept patches (block-wise random
keep indices with A-CLIP's keep-count rule), random weights, eval mode, ``inference_mode``,
one thread by default; the keep ratios are timed round-robin and the median call is kept.
FLOPs come from torch's FlopCounterMode. Results go to a JSON file.

    python benchmarks/aclip_throughput.py                       # ViT-S/16-like at 224 px
    python benchmarks/aclip_throughput.py --width 768 --layers 12 --batch 64   # ViT-B/16
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "aclip_throughput.json")
    args = parser.parse_args(argv)

    import torch

    from repro.bench import interleaved
    from repro.clip import aclip, models
    from repro.io import atomic_write_text

    torch.set_num_threads(args.threads)
    config = models.TinyCLIPConfig(image_size=args.image_size, patch_size=args.patch,
                                   vision_width=args.width, vision_layers=args.layers,
                                   vision_head_width=64 if args.width >= 256 else 32,
                                   text_width=32, text_layers=1, text_heads=2)
    visual = models.create_model(config, seed=0).visual.eval()
    grid = args.image_size // args.patch
    images = torch.randn(args.batch, 3, args.image_size, args.image_size,
                         generator=torch.Generator().manual_seed(0))
    keep = {r: aclip.random_keep_indices(args.batch, grid, r, 2,
                                         generator=torch.Generator().manual_seed(0))
            for r in args.keep}

    def forward(r):
        def call():
            with torch.inference_mode():
                aclip.encode_image_kept(visual, images, keep[r])
        return call

    timings = interleaved({r: forward(r) for r in args.keep}, items_per_call=args.batch,
                          rounds=args.rounds)
    full = max(args.keep)
    flops = {r: aclip.encoder_flops(visual, images, keep[r]) for r in args.keep}
    rows = [{"keep_ratio": r, "tokens": keep[r].shape[1] + 1,
             "gflops_per_image": flops[r] / args.batch / 1e9,
             "flops_vs_full": flops[r] / flops[full],
             "images_per_s": timings[r].throughput,
             "speedup_vs_full": timings[r].throughput / timings[full].throughput}
            for r in args.keep]
    for row in rows:
        print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row.items()))
    result = {"config": vars(args) | {"out": str(args.out)}, "torch": torch.__version__,
              "machine": platform.processor() or platform.machine(), "rows": rows}
    atomic_write_text(args.out, json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
