"""Image-text data for the CLIP chapters: two toy sources and readers of the real formats.

Toy sources (seeded, pre-rendered tensors, CPU-cheap):

- :func:`captioned_digits` — scikit-learn's 1,797 real 8 × 8 handwritten digits with captions
  drawn from templates ("a handwritten seven", ...); zero-shot classes are the ten digit names.
- :func:`compositional_scenes` — one small object (colour × shape, a few pixels wide) among
  distractor blobs in other colours, with a caption that describes the object's size, colour,
  shape and position ("a small red circle at the top left"). The object covers only a few
  patches, so dropping half the patches at random often drops it (the A-CLIP setting). The
  object's pixel mask is returned for the retention diagnostic.

Real formats, as open_clip's training and evaluation read them:

- :func:`read_csv_pairs` — a CSV/TSV of image path and caption (``--csv-img-key filepath
  --csv-caption-key title --csv-separator "\\t"``);
- :func:`read_webdataset_shards` — webdataset tar shards (``key.jpg``/``key.png`` +
  ``key.txt`` members grouped by key), read with :mod:`tarfile` (no webdataset dependency);
- :func:`read_image_folder` — ImageNet-style class folders (``val/<wnid>/*.JPEG``), labels
  the sorted folder names as torchvision's ``ImageFolder`` assigns them;
- :func:`load_images` — decode, resize, centre-crop and normalise a list of files.

A missing folder is a :class:`~repro.errors.DataUnavailableError` naming the manifest; a
corrupt file names the file.
"""

from __future__ import annotations

import csv
import io
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from repro.errors import DataUnavailableError, ParameterError

__all__ = ["CaptionedImages", "DIGIT_NAMES", "DIGIT_TEMPLATES", "captioned_digits",
           "SCENE_COLORS", "SCENE_SHAPES", "SCENE_TEMPLATES", "compositional_scenes",
           "read_csv_pairs", "read_webdataset_shards", "read_image_folder", "load_images",
           "require_folder", "CLIP_MEAN", "CLIP_STD", "write_image_folder_fixture",
           "load_caption_data", "TOY_SOURCES"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class CaptionedImages:
    """Images (N, 3, H, W) float32, one caption per image, a class label per image.

    ``caption_ids`` numbers the distinct captions (equal id = identical caption);
    ``object_masks`` (N, H, W) bool marks the object's pixels where the source has one.
    """

    images: Tensor
    captions: list[str]
    labels: Tensor
    classnames: list[str]
    caption_ids: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    object_masks: Tensor | None = None

    def __post_init__(self) -> None:
        if not len(self.caption_ids):
            index: dict[str, int] = {}
            self.caption_ids = torch.tensor([index.setdefault(c, len(index))
                                             for c in self.captions], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.captions)

    def subset(self, idx: Tensor | Sequence[int]) -> CaptionedImages:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return CaptionedImages(
            self.images[idx], [self.captions[i] for i in idx.tolist()], self.labels[idx],
            self.classnames, self.caption_ids[idx],
            None if self.object_masks is None else self.object_masks[idx])


# --------------------------------------------------------------------------- digits
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
               "nine"]
DIGIT_TEMPLATES = ["a handwritten {}.", "a photo of the digit {}.", "the number {}.",
                   "a drawing of a {}."]


def captioned_digits(*, templates: Sequence[str] = DIGIT_TEMPLATES, test_fraction: float = 0.3,
                     seed: int = 0) -> tuple[CaptionedImages, CaptionedImages]:
    """scikit-learn's digits as (train, test) image-caption pairs: 8 × 8 images scaled to
    [-1, 1] and repeated to 3 channels; each caption is a template (seeded choice) filled with
    the digit's name. Split by a seeded stratified shuffle."""
    from repro.data import load_digits

    split = load_digits(size=8, channels=3, test_fraction=test_fraction, seed=seed)
    rng = np.random.default_rng(seed)

    def caption(labels: Tensor) -> list[str]:
        picks = rng.integers(0, len(templates), size=len(labels))
        return [templates[t].format(DIGIT_NAMES[y]) for t, y in zip(picks, labels.tolist())]

    return (CaptionedImages(split.x_train, caption(split.y_train), split.y_train, DIGIT_NAMES),
            CaptionedImages(split.x_test, caption(split.y_test), split.y_test, DIGIT_NAMES))


# --------------------------------------------------------------------------- scenes
SCENE_COLORS = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.8, 0.1), "blue": (0.15, 0.3, 1.0),
                "yellow": (0.95, 0.9, 0.1)}
DISTRACTOR_COLORS = [(0.5, 0.5, 0.5), (0.6, 0.3, 0.7), (0.9, 0.55, 0.2), (0.3, 0.8, 0.8),
                     (0.85, 0.85, 0.85)]
SCENE_SHAPES = ("circle", "square", "triangle")
# zero-shot prompts shaped like the training captions, ensembled over sizes and positions
SCENE_TEMPLATES = [f"a {size} {{}} at the {where}" for size in ("small", "large")
                   for where in ("top left", "top right", "bottom left", "bottom right")]


def _shape_mask(shape: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float,
                r: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    if shape == "circle":
        return dy * dy + dx * dx <= r * r
    if shape == "square":
        return (np.abs(dy) <= 0.8 * r) & (np.abs(dx) <= 0.8 * r)
    if shape == "triangle":  # apex up, base at cy + r
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    raise ParameterError(f"unknown shape {shape!r}: use one of {SCENE_SHAPES}")


def compositional_scenes(n: int, *, size: int = 32, distractors: int = 4,
                         radius: tuple[float, float] = (2.5, 4.0), seed: int = 0,
                         noise: float = 0.05) -> CaptionedImages:
    """``n`` scenes of one class object among ``distractors`` blobs in non-class colours.

    Class = (colour, shape), 4 × 3 = 12 classes named "red circle", .... Caption: "a {size}
    {colour} {shape} at the {top|bottom} {left|right}" (size "small" below the radius
    midpoint, else "large"). Images are in [-1, 1]; ``object_masks`` marks the object."""
    if n < 1 or size < 8:
        raise ParameterError(f"need n >= 1 and size >= 8, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    colors = list(SCENE_COLORS)
    classnames = [f"{c} {s}" for c in colors for s in SCENE_SHAPES]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.empty((n, size, size, 3), np.float32)
    masks = np.zeros((n, size, size), bool)
    labels = rng.integers(0, len(classnames), size=n)
    captions = []
    margin = radius[1] + 1
    for i in range(n):
        img = np.full((size, size, 3), 0.08, np.float32)
        img += noise * rng.standard_normal((size, size, 3)).astype(np.float32)
        for _ in range(distractors):  # blobs first, so the object is drawn on top
            shape = SCENE_SHAPES[rng.integers(len(SCENE_SHAPES))]
            m = _shape_mask(shape, yy, xx, *rng.uniform(margin - 1, size - margin + 1, 2),
                            rng.uniform(*radius))
            img[m] = DISTRACTOR_COLORS[rng.integers(len(DISTRACTOR_COLORS))]
        color, shape = colors[labels[i] // 3], SCENE_SHAPES[labels[i] % 3]
        cy, cx = rng.uniform(margin, size - margin, 2)
        r = rng.uniform(*radius)
        m = _shape_mask(shape, yy, xx, cy, cx, r)
        img[m] = SCENE_COLORS[color]
        masks[i] = m
        images[i] = img
        where = f"{'top' if cy < size / 2 else 'bottom'} {'left' if cx < size / 2 else 'right'}"
        big = "small" if r < sum(radius) / 2 else "large"
        captions.append(f"a {big} {color} {shape} at the {where}")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).clamp(0, 1) * 2 - 1
    return CaptionedImages(x.contiguous(), captions, torch.from_numpy(labels).long(), classnames,
                           object_masks=torch.from_numpy(masks))


# --------------------------------------------------------------------------- real formats
def require_folder(path: str | Path, manifest: str) -> Path:
    """``path`` if it exists, else a DataUnavailableError naming the manifest (the full scale
    never falls back to synthetic data)."""
    path = Path(path)
    if not path.exists():
        raise DataUnavailableError(
            f"{path} does not exist. This is real data the full scale needs: see "
            f"data/manifests/{manifest}.yaml for what it is and how to get it (no synthetic "
            "fall-back)")
    return path


def read_csv_pairs(csv_path: str | Path, *, img_key: str = "filepath",
                   caption_key: str = "title", sep: str = "\t",
                   manifest: str = "yfcc15m") -> list[tuple[Path, str]]:
    """(image path, caption) rows of open_clip's CSV training format. Relative paths are read
    relative to the CSV's folder. Every listed image must exist."""
    csv_path = require_folder(csv_path, manifest)
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=sep)
        missing = [k for k in (img_key, caption_key) if k not in (reader.fieldnames or [])]
        if missing:
            raise DataUnavailableError(
                f"{csv_path}: columns {missing} not found (header: {reader.fieldnames}); pass "
                "img_key/caption_key/sep as for open_clip's --csv-* options")
        rows = []
        for line, row in enumerate(reader, start=2):
            path = Path(row[img_key])
            path = path if path.is_absolute() else csv_path.parent / path
            if not path.is_file():
                raise DataUnavailableError(f"{csv_path}, line {line}: image {path} not found")
            rows.append((path, row[caption_key]))
    return rows


_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".webp")


def read_webdataset_shards(shards: Sequence[str | Path], *,
                           manifest: str = "laion400m") -> Iterator[tuple[bytes, str, str]]:
    """Yield (image bytes, caption, key) from webdataset tar shards: members are grouped by
    key (the name up to the first dot) and a sample needs an image and a ``.txt`` caption."""
    for shard in shards:
        shard = require_folder(shard, manifest)
        try:
            with tarfile.open(shard) as tar:
                sample: dict[str, bytes] = {}
                key = None
                for member in tar:
                    if not member.isfile():
                        continue
                    base = Path(member.name)
                    this_key = str(base.parent / base.name.split(".", 1)[0])
                    ext = base.name.split(".", 1)[1].lower() if "." in base.name else ""
                    if key is not None and this_key != key:
                        yield from _webdataset_sample(shard, key, sample)
                        sample = {}
                    key = this_key
                    sample[ext] = tar.extractfile(member).read()
                if key is not None:
                    yield from _webdataset_sample(shard, key, sample)
        except (tarfile.TarError, EOFError, OSError) as err:
            raise DataUnavailableError(f"webdataset shard {shard} is corrupt or truncated "
                                       f"({err}); re-download it") from err


def _webdataset_sample(shard: Path, key: str, sample: dict[str, bytes]):
    image = next((sample[e.lstrip(".")] for e in _IMAGE_EXT if e.lstrip(".") in sample), None)
    if image is None or "txt" not in sample:
        return  # webdataset skips incomplete samples too (open_clip's handler warns)
    yield image, sample["txt"].decode("utf-8").strip(), key


def read_image_folder(root: str | Path, *, manifest: str = "imagenet-1k"
                      ) -> tuple[list[Path], Tensor, list[str]]:
    """(files, labels, folder names) of an ImageNet-style tree ``root/<class>/<image>``;
    labels index the sorted folder names."""
    root = require_folder(root, manifest)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise DataUnavailableError(f"{root} has no class folders; expected "
                                   f"{root}/<class>/<image> (see data/manifests/{manifest}.yaml)")
    files, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() in _IMAGE_EXT:
                files.append(path)
                labels.append(label)
    return files, torch.tensor(labels, dtype=torch.long), classes


def load_images(items: Sequence[str | Path | bytes], *, size: int = 224,
                mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> Tensor:
    """Decode images (paths or bytes), resize the short side to ``size`` (bicubic), centre-crop
    and normalise: CLIP's evaluation transform. A file that does not decode is named."""
    from PIL import Image, UnidentifiedImageError

    out = torch.empty(len(items), 3, size, size)
    mean_t, std_t = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    for i, item in enumerate(items):
        name = "<bytes>" if isinstance(item, bytes) else str(item)
        try:
            img = Image.open(io.BytesIO(item) if isinstance(item, bytes) else item)
            img = img.convert("RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise DataUnavailableError(f"image {name} is corrupt or not an image ({err})") \
                from err
        w, h = img.size
        scale = size / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                         Image.BICUBIC)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        out[i] = (x - mean_t) / std_t
    return out


def write_image_folder_fixture(root: str | Path, num_classes: int = 4, per_class: int = 3, *,
                               size: int = 32, seed: int = 0) -> Path:
    """A tiny tree in ImageNet's val layout (``root/n0000000k/ILSVRC2012_val_*.JPEG``, random
    JPEGs) for running the full-scale evaluation code at ci."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for k in range(num_classes):
        folder = root / f"n{k:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"ILSVRC2012_val_{k * per_class + j:08d}.JPEG")
    return root


TOY_SOURCES = ("digits", "scenes")


def load_caption_data(name: str, *, root: str | Path | None = None, scenes_train: int = 3000,
                      scenes_test: int = 1000, scenes_size: int = 24, seed: int = 0
                      ) -> tuple[CaptionedImages, CaptionedImages]:
    """(train, test) pairs of a named source: the toy ``"digits"`` and ``"scenes"``, or a real
    data set (any other name, e.g. ``"laion-400m"``, ``"yfcc15m"``), which must be on disk at
    ``root`` (default ``$REPRO_DATA/<name>``) and is never replaced by synthetic data. Real
    pre-training sets are streamed by the full-scale trainer, not loaded here, so a present
    real set is refused with a message saying so."""
    if name == "digits":
        return captioned_digits(seed=seed)
    if name == "scenes":
        return (compositional_scenes(scenes_train, size=scenes_size, seed=seed),
                compositional_scenes(scenes_test, size=scenes_size, seed=seed + 10_000))
    from repro.data.manifest import data_root

    folder = require_folder(Path(root) if root else data_root() / name, name)
    raise ParameterError(
        f"{name} is on disk at {folder}, but a pre-training set of this size is streamed from "
        "its shards by the full-scale trainer (read_webdataset_shards / read_csv_pairs), not "
        "loaded into a notebook; run the notebook at ci or local scale")
