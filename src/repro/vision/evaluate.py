"""Evaluation of EfficientViT checkpoints: released ImageNet weights, and head redundancy.

Two full-scale measurements of the EfficientViT chapter (Liu et al., CVPR 2023) live here, so
that the ci scale runs the same code on small fixtures:

- **Released weights** (README model zoo, top-1 of M0-M5 at 224 px): the public checkpoints,
  loaded into our model (``create_model(name, pretrained=True, checkpoint_file=...)``, which
  goes through timm) or into timm's own model, evaluated on the ImageNet-1k validation set in
  its class-folder layout (``val/<wnid>/*.JPEG``) with the official evaluation transform:
  resize the short side to 224 / 0.875 = 256 (bicubic), centre crop 224, ImageNet mean/std
  (``timm.data.create_transform`` from the model's pretrained config, as the official
  ``datasets.py`` builds it). Labels are the index of each folder's WordNet id in the
  1,000-class list timm ships (the sorted wnids), so a folder holding only some classes
  still gets the right labels.
- **Head redundancy** of a trained model (Sec. 2 / Fig. 3): the attention maps of every head
  on a set of images, reduced by :func:`repro.vision.efficientvit.head_redundancy` (each
  head's maximum cosine similarity to the others, and the mean over pairs).

Departures: the official ``main.py --eval`` uses torchvision's ImageFolder (labels from the
sorted folders present); ours maps wnids to the fixed 1,000-class order, which is the same
for the complete validation set. Evaluation is single-process (50,000 images take minutes on
one GPU).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from repro.errors import CheckpointError, DataUnavailableError, ReproError

__all__ = [
    "IMAGENET_MANIFEST",
    "IMAGENET_VAL_IMAGES",
    "imagenet_wnids",
    "ImageNetValidation",
    "eval_transform",
    "released_checkpoint_path",
    "load_released",
    "top_k_accuracy",
    "write_imagenet_fixture",
    "save_random_checkpoint",
    "ReleasedResult",
    "evaluate_released",
    "evaluate_classifier",
    "load_trained",
    "attention_redundancy",
]

IMAGENET_MANIFEST = "imagenet-1k"
IMAGENET_VAL_IMAGES = 50_000
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def _manifest_help(name: str) -> str:
    from repro.data.manifest import load_manifest

    try:
        m = load_manifest(name)
        return f"See the manifest {m.path}. To get it by hand:\n{m.manual.strip()}"
    except ReproError:
        return f"See data/manifests/{name}.yaml in the repro repository."


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids in label order (timm's list, sorted wnids)."""
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


class ImageNetValidation(torch.utils.data.Dataset):
    """``root/val/<wnid>/<image>`` (the ``imagenet-1k`` manifest's layout), labelled by wnid.

    ``complete=True`` (the full scale) insists on the whole validation set: 1,000 folders and
    50,000 images; otherwise any subset of known wnids is accepted (fixtures).
    """

    def __init__(self, root: str | Path, transform=None, complete: bool = False,
                 limit: int | None = None) -> None:
        root = Path(root).expanduser()
        val = root / "val"
        if not val.is_dir():
            where = f"{root} has no val/ folder" if root.is_dir() else f"{root} does not exist"
            raise DataUnavailableError(
                f"ImageNet validation images not found: {where}. The data folder must hold "
                f"val/<wnid>/*.JPEG, the layout of the {IMAGENET_MANIFEST} manifest "
                f"(data/manifests/{IMAGENET_MANIFEST}.yaml); ImageNet needs registration and "
                f"is never downloaded for you. {_manifest_help(IMAGENET_MANIFEST)}")
        index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
        folders = sorted(d for d in val.iterdir() if d.is_dir())
        unknown = [d.name for d in folders if d.name not in index]
        if unknown:
            raise ReproError(f"{val} has folders that are not ImageNet-1k WordNet ids: "
                             f"{unknown[:5]}; each class folder must be named by its wnid "
                             "(n01440764, ...)")
        self.samples = [(p, index[d.name]) for d in folders for p in sorted(d.iterdir())
                        if p.suffix.lower() in IMAGE_SUFFIXES]
        if not self.samples:
            raise DataUnavailableError(f"{val} holds no images (.JPEG) in class folders. "
                                       f"{_manifest_help(IMAGENET_MANIFEST)}")
        if complete and (len(folders) != len(index) or len(self.samples) != IMAGENET_VAL_IMAGES):
            raise DataUnavailableError(
                f"{val} holds {len(folders)} class folders and {len(self.samples)} images; the "
                f"ImageNet-1k validation set has {len(index)} and {IMAGENET_VAL_IMAGES:,}. "
                f"{_manifest_help(IMAGENET_MANIFEST)}")
        if limit is not None:
            self.samples = self.samples[:limit]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image, UnidentifiedImageError

        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise ReproError(f"image {path} is corrupt or not an image ({err}); replace it "
                             "from the ImageNet archive") from err
        return (self.transform(image) if self.transform else image), label


def eval_transform(name: str = "efficientvit_m0", img_size: int = 224):
    """The official evaluation transform of a model: resize to img_size / crop_pct (bicubic),
    centre crop, ImageNet normalisation -- from timm's pretrained config of ``name``."""
    import timm
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({"input_size": (3, img_size, img_size)},
                                 model=timm.create_model(name, pretrained=False))
    return create_transform(**config, is_training=False)


def released_checkpoint_path(name: str, checkpoint_dir: str | Path | None = None) -> Path:
    """Where the released weights of ``name`` (timm's hub copy, ``model.safetensors``) are
    expected: ``<checkpoint_dir or $REPRO_DATA>/<manifest name>/model.safetensors``.

    Missing: :class:`DataUnavailableError` naming the manifest and how to get the file.
    """
    from repro.data.manifest import data_root

    manifest = f"{name.replace('_', '-')}-in1k"
    folder = Path(checkpoint_dir).expanduser() if checkpoint_dir else data_root()
    path = folder / manifest / "model.safetensors"
    if not path.is_file():
        raise DataUnavailableError(
            f"the released weights of {name} are not at {path}. Download the hub copy "
            f"(hf download timm/{name}.r224_in1k model.safetensors --local-dir "
            f"{path.parent}); the manifest data/manifests/{manifest}.yaml describes the "
            f"release. {_manifest_help(manifest)}")
    return path


def load_released(name: str, checkpoint_file: str | Path, impl: str = "ours") -> nn.Module:
    """The released weights in eval mode: in our model (``impl="ours"``) or in timm's."""
    import timm

    from repro.vision.efficientvit import check_timm_checkpoint, create_model, read_checkpoint

    if impl == "ours":
        return create_model(name, pretrained=True, checkpoint_file=checkpoint_file).eval()
    if impl != "timm":
        raise ValueError(f"impl must be 'ours' or 'timm', got {impl!r}")
    check_timm_checkpoint(read_checkpoint(checkpoint_file), name, source=str(checkpoint_file))
    return timm.create_model(f"{name}.r224_in1k", pretrained=True,
                             pretrained_cfg_overlay=dict(file=str(checkpoint_file))).eval()


def top_k_accuracy(logits: Tensor, target: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """Number of samples whose label is among the k highest logits, for each k."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == target[:, None]
    return {k: int(hits[:, :k].any(dim=1).sum()) for k in ks}


def write_imagenet_fixture(root: str | Path, wnids: Sequence[str] = ("n01440764", "n01443537",
                                                                      "n15075141"),
                           per_class: int = 2, size: tuple[int, int] = (300, 260),
                           seed: int = 0) -> Path:
    """A tiny ImageNet validation folder (``root/val/<wnid>/ILSVRC2012_val_<n>.JPEG``) of
    seeded noise images, not square (the resize + crop is exercised). Returns ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    n = 0
    for c, wnid in enumerate(wnids):
        folder = root / "val" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(per_class):
            n += 1
            pixels = rng.integers(0, 160, (size[1], size[0], 3)) + 90 * np.eye(3)[c % 3]
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"ILSVRC2012_val_{n:08d}.JPEG",
                                                          quality=90)
    return root


def save_random_checkpoint(name: str, path: str | Path, seed: int = 0) -> Path:
    """A random-init timm ``name`` saved as safetensors in timm's names: the stand-in for the
    released file at the ci scale (same format, same loading code).

    BatchNorm statistics and affine parameters and the attention biases are drawn at random
    too (timm initialises them to the identity, zero and zero), so that every residual branch
    and every bias takes part in the logits a parity check compares.
    """
    import timm
    from safetensors.torch import save_file

    from repro.io import atomic_save

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(name, pretrained=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.uniform_(0.5, 1.5, generator=g)
                module.bias.normal_(0.0, 0.2, generator=g)
                module.running_mean.normal_(0.0, 0.2, generator=g)
                module.running_var.uniform_(0.5, 2.0, generator=g)
        for param_name, param in model.named_parameters():
            if "attention_biases" in param_name:
                param.normal_(0.0, 1.0, generator=g)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    return atomic_save(path, lambda tmp: save_file(tensors, tmp))


@dataclass
class ReleasedResult:
    model: str
    impl: str
    top1: float  # %
    top5: float  # %
    images: int
    paper_top1: float

    @property
    def gap(self) -> float:
        """|ours - README|, percentage points."""
        return abs(self.top1 - self.paper_top1)


@torch.no_grad()
def evaluate_released(name: str, checkpoint_file: str | Path, data_dir: str | Path, *,
                      impl: str = "ours", complete: bool = True, batch_size: int = 64,
                      workers: int = 0, limit: int | None = None,
                      device: str | torch.device = "cpu") -> ReleasedResult:
    """Top-1/top-5 (%) of the released ``name`` weights on ``data_dir/val``.

    ``complete=True`` requires the whole ImageNet validation set (the full scale); a fixture
    folder passes ``complete=False``. Everything is checked before the first batch runs.
    """
    from repro.vision.efficientvit import PAPER_TABLE

    if name not in PAPER_TABLE:
        raise ValueError(f"no README numbers for {name!r}; released models: "
                         f"{', '.join(PAPER_TABLE)}")
    dataset = ImageNetValidation(data_dir, eval_transform(name), complete=complete, limit=limit)
    model = load_released(name, checkpoint_file, impl).to(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    metrics = evaluate_classifier(model, loader, desc=f"{name} ({impl})", device=device)
    return ReleasedResult(name, impl, metrics["top1"], metrics["top5"], int(metrics["images"]),
                          PAPER_TABLE[name].top1)


@torch.no_grad()
def evaluate_classifier(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], *,
                        desc: str = "evaluate", device: str | torch.device = "cpu",
                        show_progress: bool = True) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%) of ``model`` (eval mode) over (images, labels) batches."""
    from repro.progress import progress

    model.eval().to(device)
    hits, seen = {1: 0, 5: 0}, 0
    total = len(batches) if hasattr(batches, "__len__") else None
    for images, target in progress(batches, total=total, desc=desc, unit="batch",
                                   enabled=show_progress):
        logits = model(images.to(device)).float().cpu()
        for k, v in top_k_accuracy(logits, target).items():
            hits[k] += v
        seen += target.numel()
    if not seen:
        raise ValueError("evaluate_classifier got no images")
    return {"top1": 100 * hits[1] / seen, "top5": 100 * hits[5] / seen, "images": seen}


# ----------------------------------------------------------------------------- head redundancy
def load_trained(checkpoint: str | Path, *, ema: bool = True) -> nn.Module:
    """A model trained by ``repro train efficientvit`` (its ``last.safetensors``; the run's
    ``config.json`` beside it says which model, attention, size and classes), in eval mode."""
    from repro.vision.efficientvit import create_model
    from repro.vision.train_classifier import load_weights

    path = Path(checkpoint).expanduser()
    if path.is_dir():
        path = path / "last.safetensors"
    config_path = path.parent / "config.json"
    if not path.is_file() or not config_path.is_file():
        raise DataUnavailableError(
            f"no trained EfficientViT at {path} (with config.json beside it). Train one with "
            "`torchrun --nproc-per-node 8 -m repro.vision.train_classifier --model "
            "efficientvit_m4 --attention {cascaded,mhsa} --data DIR --output RUN` on "
            f"ImageNet-1k (data/manifests/{IMAGENET_MANIFEST}.yaml) and pass RUN.")
    try:
        config = json.loads(config_path.read_text())
        fields = {k: config[k] for k in ("model", "img_size", "num_classes")}
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"{config_path} is not a config.json of `repro train "
                              f"efficientvit` ({err})") from err
    model = create_model(fields["model"], img_size=fields["img_size"],
                         num_classes=fields["num_classes"],
                         attention=config.get("attention", "cascaded"))
    return load_weights(model, path, ema=ema).eval()


@torch.no_grad()
def attention_redundancy(model: nn.Module, batches: Iterable[Tensor | tuple[Tensor, Any]], *,
                         max_batches: int | None = None, device: str | torch.device = "cpu",
                         show_progress: bool = True) -> dict[str, dict[str, float]]:
    """Head redundancy of every attention layer of ``model`` over ``batches`` of images.

    Returns ``{layer: {"max": ..., "mean": ...}}`` (see ``head_redundancy``) plus an
    ``"all"`` entry averaged over layers. Maps are reduced batch by batch (weighted by batch
    size), so a whole validation set fits in memory.
    """
    from repro.progress import progress
    from repro.vision.efficientvit import capture_attention, head_redundancy

    model.eval().to(device)
    sums: dict[str, dict[str, float]] = {}
    total = 0
    if max_batches is not None:
        batches = itertools.islice(batches, max_batches)
    for batch in progress(batches, desc="head redundancy", unit="batch", enabled=show_progress):
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        with capture_attention(model) as maps:
            model(images.to(device))
        n = images.shape[0]
        for layer, layer_maps in maps.items():
            if layer_maps.shape[1] < 2:
                continue
            entry = sums.setdefault(layer.split(".mixer")[0], {"max": 0.0, "mean": 0.0})
            for reduction in ("max", "mean"):
                entry[reduction] += n * head_redundancy(layer_maps, reduction)
        total += n
    if not total or not sums:
        raise ValueError("attention_redundancy needs at least one batch and one layer with "
                         "two or more heads")
    out = {layer: {k: v / total for k, v in entry.items()} for layer, entry in sums.items()}
    out["all"] = {k: sum(e[k] for e in out.values()) / len(out) for k in ("max", "mean")}
    return out
