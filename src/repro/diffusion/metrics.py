"""How well a generated quadrant applies the exemplar's edit to the query.

The paper measures FID and CLIP similarities on natural images (Sec. 4.2, Tables 1-2); on
procedural edits the true answer T(I) is known exactly, so we compare against it:

- :func:`quadrant_mse`: per-pixel squared error against the truth, in [0, 1] pixel units;
- :func:`ssim`: the structural similarity of Wang et al. (2004) with scikit-image's defaults
  (7x7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03, data range 1, the mean over the
  positions whose window lies inside the image and over the channels);
- :func:`edit_identification_accuracy`: the share of outputs whose nearest candidate T_k(I)
  (by MSE) is the true edit;
- :class:`DigitClassifier`: a k-nearest-neighbour classifier (scikit-learn) over edited
  training digits, which tells whether the digit of the query survived in the output
  (identity kept);
- baselines: :func:`copy_baseline` (return the query unchanged) and, in the notebooks, the same
  model sampled with the instruction dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from repro.errors import ParameterError

from .transforms import (
    EditGrids,
    TilePool,
    apply_transform,
    check_transforms,
    sample_edit_grids,
    tile_pool,
)

__all__ = ["quadrant_mse", "ssim", "edit_identification_accuracy", "DigitClassifier",
           "copy_baseline", "evaluation_grids", "evaluate_edits", "prompt_fidelity_grids",
           "image_fidelity_grids"]


def _check_pair(pred: Tensor, truth: Tensor) -> None:
    if pred.shape != truth.shape or pred.ndim != 4:
        raise ParameterError(f"expected two (N, C, H, W) tensors of one shape, got "
                             f"{tuple(pred.shape)} and {tuple(truth.shape)}")


def quadrant_mse(pred: Tensor, truth: Tensor) -> Tensor:
    """Per-image mean squared error ``(N,)`` of images in [0, 1]."""
    _check_pair(pred, truth)
    return (pred.float() - truth.float()).pow(2).mean(dim=(1, 2, 3))


def ssim(pred: Tensor, truth: Tensor, *, win_size: int = 7, data_range: float = 1.0,
         k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Per-image SSIM ``(N,)``, matching ``skimage.metrics.structural_similarity(...,
    channel_axis=0, data_range=1)`` on each image."""
    _check_pair(pred, truth)
    if win_size % 2 == 0 or min(pred.shape[-2:]) < win_size:
        raise ParameterError(f"win_size must be odd and at most the image side "
                             f"{min(pred.shape[-2:])}, got {win_size}")
    x, y = pred.double(), truth.double()
    n, c = x.shape[:2]
    kernel = torch.full((c, 1, win_size, win_size), 1.0 / win_size ** 2, dtype=x.dtype)

    def mean(t: Tensor) -> Tensor:  # only the windows that lie inside the image
        return F.conv2d(t, kernel, groups=c)

    np_ = win_size ** 2
    cov_norm = np_ / (np_ - 1)  # sample covariance, as scikit-image's default
    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return s.reshape(n, -1).mean(dim=1).float()


def edit_identification_accuracy(pred: Tensor, query: Tensor, transform: Tensor,
                                 candidates: Sequence[str]) -> float:
    """Share of ``pred`` whose nearest candidate edit of ``query`` (by MSE) is the true one
    (``transform`` indexes ``candidates``). Chance is 1 / len(candidates) when the candidates
    give distinct images."""
    candidates = check_transforms(candidates)
    errors = torch.stack([quadrant_mse(pred, apply_transform(name, query))
                          for name in candidates], dim=1)
    return float((errors.argmin(dim=1) == transform).float().mean())


def copy_baseline(query: Tensor) -> Tensor:
    """The answer of a model that ignores the instruction: the query itself."""
    return query.clone()


@dataclass
class DigitClassifier:
    """k-nearest neighbours (k = 3) among edited training digits: which digit is this tile?

    Features are colour-blind: per pixel the largest and the smallest channel value, so a
    recoloured digit looks like the original and an inverted one like its complement."""

    model: Any
    transforms: tuple[str, ...]

    @classmethod
    def fit(cls, pool: TilePool, transforms: Sequence[str], *,
            neighbours: int = 3) -> DigitClassifier:
        """Train on every digit of ``pool`` under every edit in ``transforms`` (and unedited),
        so the classifier knows a digit however it was edited."""
        from sklearn.neighbors import KNeighborsClassifier

        transforms = check_transforms(transforms)
        digits = pool.labels >= 0
        images, labels = pool.images[digits], pool.labels[digits]
        x = torch.cat([images] + [apply_transform(t, images) for t in transforms])
        y = labels.repeat(len(transforms) + 1)
        model = KNeighborsClassifier(n_neighbors=neighbours)
        model.fit(cls.features(x), y.numpy())
        return cls(model, transforms)

    @staticmethod
    def features(images: Tensor):
        return torch.cat([images.amax(1).flatten(1), images.amin(1).flatten(1)], 1).numpy()

    def predict(self, images: Tensor) -> Tensor:
        return torch.as_tensor(self.model.predict(self.features(images)))

    def accuracy(self, images: Tensor, labels: Tensor) -> float:
        """Share of digit tiles (label >= 0) classified as their label."""
        digits = labels >= 0
        if not digits.any():
            return float("nan")
        return float((self.predict(images[digits]) == labels[digits]).float().mean())


def evaluation_grids(names: Sequence[str], n: int, *, tile_size: int = 8, channels: int = 3,
                     source: str = "mixed", seed: int = 0) -> EditGrids:
    """A fixed evaluation set: exemplars from the test split of ``source``, queries from the
    test digits (never seen in training), one edit each from ``names``."""
    exemplars = tile_pool(source, "test", tile_size=tile_size, channels=channels, seed=seed)
    queries = tile_pool("digits", "test", tile_size=tile_size, channels=channels, seed=seed)
    generator = torch.Generator().manual_seed(10_000 + seed)
    return sample_edit_grids(n, exemplars, queries, names, generator)


def evaluate_edits(generated: Tensor, grids: EditGrids,
                   classifier: DigitClassifier | None = None) -> dict[str, float]:
    """Mean MSE, SSIM, edit-identification accuracy (among ``grids.names``) and, with a
    classifier, the share of digit queries whose digit is still recognised."""
    row = {"MSE": float(quadrant_mse(generated, grids.target).mean()),
           "SSIM": float(ssim(generated, grids.target).mean())}
    if len(grids.names) > 1:
        row["edit-ID acc"] = edit_identification_accuracy(generated, grids.query,
                                                          grids.transform, grids.names)
    if classifier is not None:
        row["digit kept"] = classifier.accuracy(generated, grids.query_label)
    return row


def prompt_fidelity_grids(grids: EditGrids, generated: Tensor) -> EditGrids:
    """The paper's prompt fidelity (Sec. 4.2) with the roles swapped: the generated pair
    (I, I'_gen) is the instruction, E the query, the real E' the truth. Scored with
    :func:`evaluate_edits` (MSE in place of the paper's FID)."""
    return EditGrids(grids.query, generated, grids.exemplar, grids.exemplar_edited,
                     grids.transform, torch.full_like(grids.query_label, -1), grids.names)


def image_fidelity_grids(grids: EditGrids, generated: Tensor) -> EditGrids:
    """The paper's image fidelity (Sec. 4.2): the inverse instruction (E' -> E) applied to the
    generated I'_gen should give back the query I."""
    return EditGrids(grids.exemplar_edited, grids.exemplar, generated, grids.query,
                     grids.transform, grids.query_label, ())
