"""Image edits that a model must learn from one example pair, and the images they act on.

ImageBrush is trained on InstructPix2Pix's before/after pairs (Sec. 4.1 of the paper); on a CPU
we use edits that a program can apply exactly, so the true output of every query is known:

- *colour inversion* (``invert``: x -> 1 - x), *flips* (``hflip``, ``vflip``), *rotations*
  (``rot90``, ``rot180``), a *shift* (``shift``: right by a quarter of the tile, zero fill),
  *thickening* (``thicken``: a 3x3 grey dilation, strokes one pixel wider on each side), a
  *colour change* (``recolour``: the RGB channels cycled, red -> green -> blue -> red), and
  *compositions* written ``"a+b"`` (apply a, then b).
- ``SEEN_TRANSFORMS`` are the edits of the training grids; ``HELD_OUT_TRANSFORMS`` never appear
  in training (two compositions of seen edits and one new primitive, ``rot90``): the question
  of whether the model generalises to an instruction it has not seen.

Images are ``(N, C, H, W)`` float tensors in [0, 1] (the model's [-1, 1] is a library detail of
:mod:`repro.diffusion.imagebrush`). Tiles come from scikit-learn's handwritten digits
(:func:`repro.data.load_digits`, real images) and from generated shapes (discs, squares,
triangles, crosses), each drawn in one of six saturated ink colours on black, so that every
colour change is visible. Every function takes an explicit ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from repro.errors import ParameterError

__all__ = [
    "PRIMITIVES",
    "SEEN_TRANSFORMS",
    "HELD_OUT_TRANSFORMS",
    "INK_COLOURS",
    "apply_transform",
    "check_transforms",
    "colourise",
    "random_shapes",
    "TilePool",
    "tile_pool",
    "EditGrids",
    "sample_edit_grids",
]


def _hflip(x: Tensor) -> Tensor:
    return x.flip(-1)


def _vflip(x: Tensor) -> Tensor:
    return x.flip(-2)


def _rot90(x: Tensor) -> Tensor:
    return x.rot90(1, dims=(-2, -1))  # counter-clockwise


def _rot180(x: Tensor) -> Tensor:
    return x.rot90(2, dims=(-2, -1))


def _invert(x: Tensor) -> Tensor:
    return 1.0 - x


def _recolour(x: Tensor) -> Tensor:
    if x.shape[-3] != 3:
        raise ParameterError("'recolour' cycles the RGB channels: it needs 3-channel tiles")
    return x.roll(1, dims=-3)  # out[G] = in[R], out[B] = in[G], out[R] = in[B]


def _shift(x: Tensor) -> Tensor:
    k = max(1, x.shape[-1] // 4)
    return F.pad(x[..., :-k], (k, 0))  # right by k pixels, zeros come in on the left


def _thicken(x: Tensor) -> Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


PRIMITIVES: dict[str, Callable[[Tensor], Tensor]] = {
    "hflip": _hflip,
    "vflip": _vflip,
    "rot90": _rot90,
    "rot180": _rot180,
    "invert": _invert,
    "recolour": _recolour,
    "shift": _shift,
    "thicken": _thicken,
}

SEEN_TRANSFORMS: tuple[str, ...] = ("hflip", "vflip", "invert", "recolour", "shift", "thicken")
HELD_OUT_TRANSFORMS: tuple[str, ...] = ("hflip+invert", "vflip+recolour", "rot90")

# red, green, blue, yellow, cyan, magenta: no white, so that cycling the channels changes
# every ink colour
INK_COLOURS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0],
                            [1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])


def check_transforms(names: Sequence[str]) -> tuple[str, ...]:
    """Validate transform names (``"a"`` or compositions ``"a+b"``) before any compute."""
    if isinstance(names, str):
        raise ParameterError(f"give a list of transformation names, not one string: {names!r}")
    names = tuple(names)
    if not names:
        raise ParameterError("give at least one transformation")
    for name in names:
        unknown = [p for p in name.split("+") if p not in PRIMITIVES]
        if unknown:
            raise ParameterError(f"unknown transformation {name!r} (unknown part(s) {unknown});"
                                 f" known: {', '.join(PRIMITIVES)}, and compositions 'a+b'")
    return names


def apply_transform(name: str, images: Tensor) -> Tensor:
    """Apply the edit ``name`` (``"hflip"``, ``"hflip+invert"``, ...) to ``(N, C, H, W)``
    images in [0, 1]."""
    check_transforms([name])
    for part in name.split("+"):
        images = PRIMITIVES[part](images)
    return images


def colourise(grey: Tensor, colour_index: Tensor) -> Tensor:
    """``(N, 1, H, W)`` intensities in [0, 1] -> ``(N, 3, H, W)`` ink of the given colours."""
    return grey * INK_COLOURS[colour_index].view(-1, 3, 1, 1)


def random_shapes(n: int, size: int, generator: torch.Generator) -> Tensor:
    """``n`` grey ``(1, size, size)`` masks of a disc, square, triangle or cross at a random
    position and scale (intensity 1 inside, 0 outside)."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32) + 0.5,
                            torch.arange(size, dtype=torch.float32) + 0.5, indexing="ij")
    kind = torch.randint(0, 4, (n,), generator=generator)
    radius = size * (0.2 + 0.15 * torch.rand(n, generator=generator))
    centre = radius[:, None] + (size - 2 * radius[:, None]) * torch.rand(n, 2,
                                                                         generator=generator)
    cy, cx, r = centre[:, 0, None, None], centre[:, 1, None, None], radius[:, None, None]
    dy, dx = ys - cy, xs - cx
    disc = dy ** 2 + dx ** 2 <= r ** 2
    square = (dy.abs() <= r * 0.85) & (dx.abs() <= r * 0.85)
    triangle = (dy <= r * 0.8) & (dy >= -r) & (dx.abs() <= (dy + r) * 0.55)
    cross = ((dy.abs() <= r * 0.3) | (dx.abs() <= r * 0.3)) & (dy.abs() <= r) & (dx.abs() <= r)
    masks = torch.stack([disc, square, triangle, cross], dim=1)  # (n, 4, size, size)
    chosen = masks[torch.arange(n), kind]
    return chosen.float().unsqueeze(1)


@dataclass
class TilePool:
    """Tiles ``images`` ``(N, C, H, W)`` in [0, 1] and their digit ``labels`` (-1 for a
    shape)."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)


def tile_pool(source: str, split: str, *, tile_size: int = 8, channels: int = 3,
              num_shapes: int = 600, seed: int = 0) -> TilePool:
    """The tiles of one split: ``source`` is ``"digits"``, ``"shapes"`` or ``"mixed"`` (both);
    ``split`` is ``"train"`` or ``"test"`` (the digits' seeded stratified split of
    :func:`repro.data.load_digits`; shapes from a different seed per split). Each tile gets a
    random ink colour (``channels=3``) or stays grey (``channels=1``)."""
    from repro.data import load_digits

    if source not in ("digits", "shapes", "mixed"):
        raise ParameterError(f"unknown tile source {source!r}: use digits, shapes or mixed")
    if split not in ("train", "test"):
        raise ParameterError(f"split must be 'train' or 'test', got {split!r}")
    if channels not in (1, 3):
        raise ParameterError(f"channels must be 1 or 3, got {channels}")
    generator = torch.Generator().manual_seed(seed * 2 + (split == "test"))
    parts, labels = [], []
    if source in ("digits", "mixed"):
        digits = load_digits(size=tile_size, seed=seed)
        x = digits.x_train if split == "train" else digits.x_test
        y = digits.y_train if split == "train" else digits.y_test
        parts.append(((x + 1) / 2).clamp(0, 1))  # load_digits standardises to [-1, 1]
        labels.append(y)
    if source in ("shapes", "mixed"):
        parts.append(random_shapes(num_shapes, tile_size, generator))
        labels.append(torch.full((num_shapes,), -1, dtype=torch.int64))
    grey, label = torch.cat(parts), torch.cat(labels)
    if channels == 3:
        colour = torch.randint(0, len(INK_COLOURS), (len(label),), generator=generator)
        return TilePool(colourise(grey, colour), label)
    return TilePool(grey, label)


@dataclass
class EditGrids:
    """A batch of analogy problems: exemplar pair (``exemplar``, ``exemplar_edited``), the
    ``query`` and its true edited version ``target``; ``transform`` indexes ``names``, and
    ``query_label`` is the query's digit (-1 for a shape)."""

    exemplar: Tensor
    exemplar_edited: Tensor
    query: Tensor
    target: Tensor
    transform: Tensor
    query_label: Tensor
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.transform)


def sample_edit_grids(n: int, exemplars: TilePool, queries: TilePool, names: Sequence[str],
                      generator: torch.Generator) -> EditGrids:
    """Draw ``n`` problems: one edit per problem, uniformly from ``names``; an exemplar tile
    and a different query tile drawn independently from their pools."""
    names = check_transforms(names)
    transform = torch.randint(0, len(names), (n,), generator=generator)
    ex = exemplars.images[torch.randint(0, len(exemplars), (n,), generator=generator)]
    q_index = torch.randint(0, len(queries), (n,), generator=generator)
    query = queries.images[q_index]
    ex_edit, target = torch.empty_like(ex), torch.empty_like(query)
    for k, name in enumerate(names):
        rows = transform == k
        if rows.any():
            ex_edit[rows] = apply_transform(name, ex[rows])
            target[rows] = apply_transform(name, query[rows])
    return EditGrids(ex, ex_edit, query, target, transform, queries.labels[q_index], names)
