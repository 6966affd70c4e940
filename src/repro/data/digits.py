"""scikit-learn's handwritten digits: 1,797 real 8×8 grey images in 10 classes, shipped
inside scikit-learn, so they work offline and in CI."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageSplit:
    """Images ``x`` (N, C, H, W) float32, standardised, and labels ``y`` (N,) int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_digits(size: int = 8, channels: int = 1, test_fraction: float = 0.25,
                seed: int = 0) -> ImageSplit:
    """Load the digits, optionally resized to ``size``×``size`` (bilinear) and repeated to
    ``channels`` channels, split by a seeded stratified shuffle."""
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if size < 8:
        raise ValueError(f"size must be at least 8 (the images are 8×8), got {size}")
    bunch = _load()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    if size != 8:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                            align_corners=False)
    x = (x - 0.5) / 0.5
    if channels == 3:
        x = x.repeat(1, 3, 1, 1)
    idx_train, idx_test = train_test_split(torch.arange(len(y)).numpy(),
                                           test_size=test_fraction, random_state=seed,
                                           stratify=y.numpy())
    idx_train, idx_test = torch.as_tensor(idx_train), torch.as_tensor(idx_test)
    return ImageSplit(x[idx_train], y[idx_train], x[idx_test], y[idx_test],
                      [str(i) for i in range(10)])
