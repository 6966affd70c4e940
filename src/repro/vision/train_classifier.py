"""Full-scale ImageNet-1k training of EfficientViT (Liu et al., CVPR 2023), under torchrun::

    torchrun --nproc-per-node 8 -m repro.vision.train_classifier \\
        --model efficientvit_m4 --data /data/imagenet --output runs/m4      # the paper's run
    repro train efficientvit --model efficientvit_tiny --data DIR --img-size 32 --device cpu

The recipe is the official one (microsoft/Cream, ``EfficientViT/classification/main.py`` and
``engine.py``; spec §4.3), assembled from timm's parts rather than re-written:

- 300 epochs on 8 GPUs x 256 images; AdamW at lr 1e-3 x global batch / 512 (4e-3), weight
  decay 0.025 except on norms, biases and attention biases
  (``timm.optim.param_groups_weight_decay``);
- cosine schedule, 5 warm-up epochs from 1e-6, minimum 1e-5, stepped once per epoch
  (``timm.scheduler.CosineLRScheduler``) *after* the epoch, as ``main.py`` does: epoch 0 runs
  at the warm-up lr the scheduler sets when it is built, and epoch e >= 1 at the schedule's
  value for e - 1 (so epochs 0 and 1 both run at 1e-6, epoch 2 at 8.0e-4 for batch 2048);
- repeated augmentation on by default (``main.py``'s ``--repeated-aug``, DeiT's RASampler:
  3 augmented copies of each image on different ranks, epochs cut to a multiple of 256 images;
  here timm's ``RepeatAugSampler``, the same algorithm); ``--no-repeated-aug`` turns it off;
- RandAugment ``rand-m9-mstd0.5-inc1``, random erasing 0.25 (pixel mode), colour jitter 0.4,
  bicubic; evaluation resizes to 256/224 of the crop and centre-crops
  (``timm.data.create_transform``);
- Mixup 0.8 / CutMix 1.0 (switch probability 0.5) with label smoothing 0.1, soft-target
  cross-entropy (``timm.data.Mixup``, ``timm.loss.SoftTargetCrossEntropy``);
- adaptive gradient clipping (AGC), factor 0.02 (``timm.utils.dispatch_clip_grad``);
- model EMA with decay 0.99996 (``timm.utils.ModelEmaV3``).

Departures from the official script:

- The loop is this module's own, not :func:`repro.train.fit`: fit is indexed by step
  (``batch_fn(step)``) and has no place for sampler epochs, per-epoch learning rates, Mixup,
  AGC and an EMA copy in the checkpoint.
- ``--attention mhsa`` trains the equal-width MHSA variant (the baseline of the paper's
  attention comparison; not in the official script).
- Validation is split across ranks so that every image counts once, and reports the EMA model
  as well; the official script's ``--dist-eval`` pads the last shard with repeated images.
- Training is fp32, like the official script (its autocast is commented out); ``--amp`` turns
  on bf16 autocast. timm's ``create_transform`` (in the official script too) switches colour
  jitter off when RandAugment is on, so the 0.4 has no effect in either.
- RandAugment's posterize keeps 0 bits at the top magnitude; Pillow >= 13 refuses that, older
  Pillow (the official run's) returned a black image, which is what we return too.
- Checkpoints are written at epoch ends (safetensors, atomic, rank 0). ``--max-steps`` ends
  the epoch in progress early and counts it as done. Every epoch reseeds from
  (seed, rank, epoch), so a resumed run continues with the numbers of an uninterrupted one.
  This entry point owns its process and seeds its global RNGs (Python, NumPy, torch) itself,
  because timm's augmentations (RandAugment, random erasing, Mixup) draw from them; the
  official script seeds torch and NumPy with seed + rank once.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from repro.distributed import (
    DistInfo,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    init_from_env,
    read_env,
    shutdown,
    unwrap,
    wrap_ddp,
)
from repro.errors import CheckpointError, DataUnavailableError, ReproError
from repro.io import atomic_write_text
from repro.train import (
    CHECKPOINT_NAME,
    History,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
)

__all__ = ["add_parser", "add_arguments", "resolve_args", "scaled_lr", "param_groups",
           "samples_per_rank", "epoch_lr", "train_one_epoch", "evaluate", "load_weights",
           "main", "cli"]

DATA_MANIFEST = "imagenet-1k"
BASE_LR, BASE_BATCH = 1e-3, 512  # lr = BASE_LR x global batch / BASE_BATCH (main.py)


# ----------------------------------------------------------------------------- arguments
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``efficientvit`` to ``repro train``'s sub-commands."""
    parser = subparsers.add_parser(
        "efficientvit", help="train EfficientViT on ImageNet-1k (torchrun, DDP)",
        description=__doc__.split("\n\n")[0].rstrip(":"))
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options; recipe defaults are the official script's (spec §4.3)."""
    a = parser.add_argument
    a("--model", default="efficientvit_m4", help="efficientvit_m0..m5 or a toy variant")
    a("--attention", choices=("cascaded", "mhsa"), default="cascaded",
      help="cascaded group attention (the paper's) or equal-width MHSA (its baseline)")
    a("--data", type=Path, required=True, help="ImageFolder root with train/ and val/ "
      f"(manifest {DATA_MANIFEST})")
    a("--epochs", type=int, default=300)
    a("--batch-size", type=int, default=256, help="per process (GPU)")
    a("--lr", type=float, default=None, help=f"peak lr; default {BASE_LR:g} x global batch / "
      f"{BASE_BATCH}")
    a("--workers", type=int, default=8, help="data-loading processes per rank")
    a("--output", type=Path, default=Path("runs/efficientvit"), help="checkpoints and logs")
    a("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
      help=f"continue from CHECKPOINT (default OUTPUT/{CHECKPOINT_NAME})")
    a("--device", default="auto", help="auto (cuda:LOCAL_RANK if CUDA, else cpu), cpu, cuda")
    a("--max-steps", type=int, default=None, help="stop after this many optimizer steps in "
      "all; the epoch in progress then counts as done (smoke tests)")
    a("--img-size", type=int, default=None, help="default: the variant's (224 for M0-M5)")
    a("--num-classes", type=int, default=None, help="default: the class folders in train/")
    a("--seed", type=int, default=0)
    a("--amp", action="store_true", help="bf16 autocast (the official run is fp32)")
    r = parser.add_argument_group("recipe (defaults: the paper's, Cream main.py)").add_argument
    r("--weight-decay", type=float, default=0.025)
    r("--warmup-epochs", type=int, default=5)
    r("--warmup-lr", type=float, default=1e-6)
    r("--min-lr", type=float, default=1e-5)
    r("--smoothing", type=float, default=0.1)
    r("--mixup", type=float, default=0.8)
    r("--cutmix", type=float, default=1.0)
    r("--randaugment", default="rand-m9-mstd0.5-inc1")
    r("--reprob", type=float, default=0.25, help="random erasing probability")
    r("--color-jitter", type=float, default=0.4)
    r("--clip-grad", type=float, default=0.02, help="AGC clip factor; 0 turns it off")
    r("--ema-decay", type=float, default=0.99996, help="0 turns the EMA off")
    r("--repeated-aug", dest="repeated_aug", action="store_true", default=True,
      help="3 augmented repeats per image across ranks (official default, on)")
    r("--no-repeated-aug", dest="repeated_aug", action="store_false",
      help="plain DistributedSampler instead")
    parser.set_defaults(func=main)


def scaled_lr(batch_size: int, world_size: int, base_lr: float = BASE_LR) -> float:
    """The linear scaling rule of the official script: base_lr x global batch / 512."""
    return base_lr * batch_size * world_size / BASE_BATCH


def _variants() -> dict[str, Any]:
    from repro.vision.efficientvit import TOY_VARIANTS, VARIANTS

    return {**VARIANTS, **TOY_VARIANTS}


def _data_help(root: Path, problem: str) -> str:
    from repro.data.manifest import load_manifest

    try:
        m = load_manifest(DATA_MANIFEST)
        how = f"See the manifest {m.path}. To get it by hand:\n{m.manual.strip()}"
    except ReproError:
        how = f"See the manifest data/manifests/{DATA_MANIFEST}.yaml of the repro repository."
    return (f"{problem}. --data must hold train/<class>/*.JPEG and val/<class>/*.JPEG, the "
            f"layout of the {DATA_MANIFEST} manifest; ImageNet-1k needs registration and is "
            f"never downloaded for you. {how}")


def _class_folders(root: Path) -> list[str]:
    missing = [s for s in ("train", "val") if not (root / s).is_dir()]
    if missing:
        where = f"{root} has no {' or '.join(s + '/' for s in missing)}"
        raise DataUnavailableError(_data_help(root, where if root.is_dir() else
                                              f"data folder {root} does not exist"))
    train, val = ([d.name for d in sorted((root / s).iterdir()) if d.is_dir()]
                  for s in ("train", "val"))
    if not train:
        raise DataUnavailableError(_data_help(root, f"{root / 'train'} has no class folders"))
    if train != val:
        odd = sorted(set(train) ^ set(val))[:5]
        raise ReproError(f"train/ and val/ of {root} need the same class folders (labels are "
                         f"their sorted order); they differ in {odd}")
    return train


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Check every input and fill the derived defaults, before any compute (errors exit 2)."""
    args = argparse.Namespace(**vars(args))
    variants = _variants()
    if args.model not in variants:
        raise ReproError(f"unknown model {args.model!r}; valid names: {', '.join(variants)}")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ReproError(f"--{name.replace('_', '-')} must be >= 1")
    if args.max_steps is not None and args.max_steps < 1:
        raise ReproError("--max-steps must be >= 1")
    if args.workers < 0:
        raise ReproError("--workers must be >= 0")
    if (args.mixup > 0 or args.cutmix > 0) and args.batch_size % 2:
        raise ReproError(f"--batch-size {args.batch_size} must be even for Mixup/CutMix "
                         "(or pass --mixup 0 --cutmix 0)")
    ranks = read_env()
    args.world_size = ranks[1] if ranks else 1
    args.lr = args.lr if args.lr is not None else scaled_lr(args.batch_size, args.world_size)
    if args.lr <= 0:
        raise ReproError("--lr must be > 0")
    args.img_size = args.img_size or variants[args.model].img_size
    args.classes = _class_folders(args.data)
    if args.num_classes is None:
        args.num_classes = len(args.classes)
    elif args.num_classes != len(args.classes):
        raise ReproError(f"--num-classes {args.num_classes} but {args.data / 'train'} has "
                         f"{len(args.classes)} class folders")
    args.resume = resolve_resume(args.output, args.resume)
    return args


# ----------------------------------------------------------------------------- data
def build_datasets(args: argparse.Namespace):
    """Train and val ImageFolders with the paper's transforms (timm's create_transform)."""
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    train_tf = create_transform(
        args.img_size, is_training=True, auto_augment=args.randaugment or None,
        color_jitter=args.color_jitter, interpolation="bicubic", re_prob=args.reprob,
        re_mode="pixel", re_count=1)
    _zero_bit_posterize_is_black(train_tf)
    val_tf = create_transform(args.img_size, is_training=False, interpolation="bicubic",
                              crop_pct=224 / 256)
    try:
        train = ImageFolder(str(args.data / "train"), transform=train_tf)
        val = ImageFolder(str(args.data / "val"), transform=val_tf)
    except FileNotFoundError as err:  # a class folder without images
        raise DataUnavailableError(_data_help(args.data, str(err).rstrip("."))) from err
    per_rank = samples_per_rank(len(train), args.world_size, args.repeated_aug)
    if per_rank < args.batch_size:
        extra = (" (repeated augmentation cuts each epoch to a multiple of 256 images: pass "
                 "--no-repeated-aug for a small data set)" if args.repeated_aug else "")
        raise ReproError(f"{args.data / 'train'} has {len(train)} images, {per_rank} per "
                         f"process and epoch{extra}: not one full batch of {args.batch_size}; "
                         "lower --batch-size")
    return train, val


def samples_per_rank(images: int, world_size: int, repeated_aug: bool) -> int:
    """Training images one process sees per epoch: with repeated augmentation, DeiT's RASampler
    rule floor(images // 256 * 256 / world_size); without, images // world_size."""
    if repeated_aug:
        return math.floor(images // 256 * 256 / world_size)
    return images // world_size


def _posterize(img, bits_to_keep: int, **_):
    from PIL import Image, ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep < 1:  # what Pillow < 13 returned for 0 bits: every channel zero
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _zero_bit_posterize_is_black(transform) -> None:
    """Keep RandAugment's posterize working on Pillow >= 13.

    With ``-inc1`` and magnitude noise, timm asks for a 0-bit posterize whenever the sampled
    magnitude reaches 10 (m9 + N(0, 0.5) does, a few percent of the draws); Pillow >= 13 raises
    on bits < 1 where older Pillow, that of the official run, returned a black image. Only
    the ops of this transform are changed, not timm's tables.
    """
    from timm.data.auto_augment import RandAugment

    for t in getattr(transform, "transforms", []):
        if isinstance(t, RandAugment):
            for op in t.ops:
                if op.name.startswith("Posterize"):
                    op.aug_fn = _posterize


def build_loaders(train, val, args: argparse.Namespace, info: DistInfo):
    """Sharded loaders: the training sampler reshuffles each epoch; validation gives every
    rank a disjoint slice, so that each image counts once."""
    from torch.utils.data import DataLoader, DistributedSampler, Subset

    if args.repeated_aug:
        from timm.data.distributed_sampler import RepeatAugSampler

        sampler = RepeatAugSampler(train, num_replicas=info.world_size, rank=info.rank)
    else:
        sampler = DistributedSampler(train, num_replicas=info.world_size, rank=info.rank,
                                     shuffle=True, seed=args.seed)
    common = dict(num_workers=args.workers, pin_memory=info.device.type == "cuda")
    train_loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler,
                              drop_last=True, **common)
    shard = Subset(val, range(info.rank, len(val), info.world_size))
    val_loader = DataLoader(shard, batch_size=args.batch_size, shuffle=False, **common)
    return train_loader, val_loader, sampler


# ----------------------------------------------------------------------------- model, optimizer
def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv/linear weights only: not on norms, biases or the attention biases
    (the model's ``no_weight_decay`` in the official code and timm)."""
    from timm.optim import param_groups_weight_decay

    return param_groups_weight_decay(model, weight_decay,
                                     no_weight_decay_list=["*attention_biases"])


def build_training(args: argparse.Namespace, info: DistInfo):
    """Model (DDP-wrapped when distributed), its EMA, AdamW and the per-epoch cosine schedule."""
    from timm.scheduler import CosineLRScheduler
    from timm.utils import ModelEmaV3

    from repro.vision.efficientvit import create_model

    model = create_model(args.model, img_size=args.img_size, num_classes=args.num_classes,
                         attention=args.attention)
    model.to(info.device)
    ema = ModelEmaV3(model, decay=args.ema_decay) if args.ema_decay > 0 else None
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr)
    scheduler = CosineLRScheduler(
        optimizer, t_initial=args.epochs, lr_min=args.min_lr, warmup_t=args.warmup_epochs,
        warmup_lr_init=args.warmup_lr, t_in_epochs=True)
    return wrap_ddp(model, info), ema, optimizer, scheduler


def _checkpointed(model: nn.Module, ema) -> nn.Module:
    """What a checkpoint holds besides the optimizer: the model and its EMA copy."""
    parts = {"model": unwrap(model)}
    if ema is not None:
        parts["ema"] = ema.module
    return nn.ModuleDict(parts)


def load_weights(model: nn.Module, path: str | Path, *, ema: bool = True) -> nn.Module:
    """Load the EMA (or raw) weights of a checkpoint written by this script into ``model``
    (its content hash is verified first: an altered file is refused with a CheckpointError)."""
    from repro.train import read_checkpoint

    tensors, _ = read_checkpoint(path)
    prefix = "model.ema." if ema else "model.model."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError(f"{path} holds no {'EMA ' if ema else ''}weights of this script")
    model.load_state_dict(state)
    return model


# ----------------------------------------------------------------------------- loop
def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def train_one_epoch(model: nn.Module, ema, loader, optimizer, criterion, mixup,
                    args: argparse.Namespace, info: DistInfo, max_batches: int | None,
                    desc: str = "train") -> tuple[float, int]:
    """One pass over ``loader`` (at most ``max_batches``); returns (mean loss, steps)."""
    from timm.utils import dispatch_clip_grad

    from repro.progress import progress

    model.train()
    total, steps = torch.zeros((), device=info.device), 0
    total_batches = len(loader) if max_batches is None else min(len(loader), max_batches)
    batches = itertools.islice(loader, total_batches)
    for images, target in progress(batches, desc=desc, total=total_batches, unit="step",
                                   enabled=info.is_main, leave=False):
        images = images.to(info.device, non_blocking=True)
        target = target.to(info.device, non_blocking=True)
        if mixup is not None:
            images, target = mixup(images, target)
        with _autocast(info.device, args.amp):
            loss = criterion(model(images), target)
        mean_loss = all_reduce_mean(loss.detach())  # every rank stops together on a NaN
        if not torch.isfinite(mean_loss):
            raise ReproError(f"training diverged: loss {mean_loss.item()} at step {steps} of "
                             f"{desc}; lower --lr, or resume from the last checkpoint in "
                             f"{args.output}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip_grad:
            dispatch_clip_grad(model.parameters(), args.clip_grad, mode="agc")
        optimizer.step()
        if ema is not None:
            ema.update(unwrap(model))
        total += mean_loss
        steps += 1
    return float(total) / max(steps, 1), steps


@torch.no_grad()
def evaluate(model: nn.Module, loader, info: DistInfo, amp: bool = False) -> dict[str, float]:
    """Top-1/top-5 accuracy (%) and cross-entropy over the whole validation set (summed over
    ranks). Pass the unwrapped model: ranks may hold different numbers of batches."""
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=info.device)  # loss, top1, top5, n
    for images, target in loader:
        images = images.to(info.device, non_blocking=True)
        target = target.to(info.device, non_blocking=True)
        with _autocast(info.device, amp):
            logits = model(images).float()
        hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == target[:, None]
        sums += torch.stack([F.cross_entropy(logits, target, reduction="sum"),
                             hits[:, 0].sum(), hits.any(dim=1).sum(),
                             torch.tensor(target.numel(), device=info.device)]).double()
    loss, top1, top5, n = all_reduce_sum(sums).tolist()
    seen = max(n, 1.0)
    return {"top1": 100 * top1 / seen, "top5": 100 * top5 / seen, "loss": loss / seen,
            "images": n}


def _record(history: History, epoch: int, step: int, loss: float, lr: float,
            metrics: dict[str, float]) -> None:
    history.step.append(step)
    history.loss.append(loss)
    history.lr.append(lr)
    history.metrics.setdefault("epoch", []).append(float(epoch))
    history.evals.append({"step": step, "epoch": epoch, **metrics})


def build_criterion(args: argparse.Namespace):
    """(Mixup or None, loss): with Mixup/CutMix the label smoothing moves into the mixed
    soft targets (timm's Mixup), as in the official script."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if args.mixup > 0 or args.cutmix > 0:
        mixup = Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, switch_prob=0.5,
                      label_smoothing=args.smoothing, num_classes=args.num_classes)
        return mixup, SoftTargetCrossEntropy()
    return None, LabelSmoothingCrossEntropy(args.smoothing)


def _resume(path: Path, state: nn.Module, optimizer) -> tuple[int, History, int]:
    """(optimizer steps, history, first epoch to run) from a checkpoint of this script."""
    step, history = load_checkpoint(path, state, optimizer)
    epochs = history.metrics.get("epoch", [])
    if history.step and not epochs:
        raise CheckpointError(f"{path} was not written by `repro train efficientvit`")
    return step, history, int(epochs[-1]) + 1 if epochs else 0


def _evaluate_both(model: nn.Module, ema, loader, info: DistInfo, amp: bool) -> dict:
    metrics = evaluate(unwrap(model), loader, info, amp)
    if ema is not None:
        metrics |= {f"ema_{k}": v for k, v in evaluate(ema.module, loader, info, amp).items()}
    return metrics


def _seed_process(seed: int) -> None:
    """Seed this process's global RNGs (the entry point owns the process; timm's augmentations
    and the model's initialisers draw from them)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_lr(scheduler, epoch: int) -> float:
    """Set and return the lr of ``epoch`` as the official loop has it: the scheduler is
    stepped after each epoch (``lr_scheduler.step(epoch)``), so epoch e >= 1 runs at the
    schedule's value for e - 1 and epoch 0 at its value for 0 (the warm-up start)."""
    scheduler.step(max(epoch - 1, 0))
    return scheduler.optimizer.param_groups[0]["lr"]


def main(args: argparse.Namespace) -> int:
    """``repro train efficientvit``: check the input, then train under torchrun (or alone)."""
    args = resolve_args(args)
    train_set, val_set = build_datasets(args)
    info = init_from_env(device=args.device)
    try:
        _seed_process(args.seed)  # same initial weights on every rank
        model, ema, optimizer, scheduler = build_training(args, info)
        state = _checkpointed(model, ema)
        step, history, start_epoch = 0, History(), 0
        if args.resume is not None:
            step, history, start_epoch = _resume(args.resume, state, optimizer)
        train_loader, val_loader, sampler = build_loaders(train_set, val_set, args, info)
        mixup, criterion = build_criterion(args)
        if info.is_main:
            _write_config(args, info, start_epoch, step)
        for epoch in range(start_epoch, args.epochs):
            left = None if args.max_steps is None else args.max_steps - step
            if left is not None and left <= 0:
                break
            _seed_process(args.seed + info.rank + 10_000 * epoch)  # resume = no interruption
            sampler.set_epoch(epoch)
            lr = epoch_lr(scheduler, epoch)  # the official loop's lr for this epoch
            t0 = time.perf_counter()
            loss, steps = train_one_epoch(model, ema, train_loader, optimizer, criterion, mixup,
                                          args, info, left, desc=f"epoch {epoch}")
            step += steps
            metrics = _evaluate_both(model, ema, val_loader, info, args.amp)
            _record(history, epoch, step, loss, lr, metrics | {
                "seconds": time.perf_counter() - t0})
            if info.is_main:
                save_checkpoint(args.output / CHECKPOINT_NAME, state, optimizer, step, history)
                _log(args.output, history.evals[-1] | {"train_loss": loss, "lr": lr})
            barrier()
        return 0
    finally:
        shutdown()


def _write_config(args: argparse.Namespace, info: DistInfo, start_epoch: int,
                  step: int) -> None:
    args.output.mkdir(parents=True, exist_ok=True)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
              if k not in ("func", "classes")}
    atomic_write_text(args.output / "config.json", json.dumps(config, indent=2) + "\n")
    print(f"{args.model} on {args.data} ({args.num_classes} classes, {args.img_size} px): "
          f"{info.world_size} x {args.batch_size} images/step, lr {args.lr:.3g}, device "
          f"{info.device}", flush=True)
    done = start_epoch >= args.epochs or (args.max_steps is not None and step >= args.max_steps)
    print(f"nothing left to do: {start_epoch} epochs and {step} steps done" if done else
          f"epochs {start_epoch}..{args.epochs - 1}, from step {step}", flush=True)


def _log(output: Path, row: dict[str, float]) -> None:
    with open(output / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    shown = " ".join(f"{k} {v:.4g}" for k, v in row.items()
                     if isinstance(v, float) and math.isfinite(v))
    print(f"epoch {row['epoch']} step {row['step']}: {shown}", flush=True)


def cli(argv: list[str] | None = None) -> int:
    """``python -m repro.vision.train_classifier``: the same options as ``repro train
    efficientvit``, the same exit status 2 on bad input."""
    from repro.entry import standalone

    return standalone("python -m repro.vision.train_classifier",
                      __doc__.split("\n\n")[0].rstrip(":"), add_arguments, main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())
