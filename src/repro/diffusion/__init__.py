"""Image manipulation by diffusion: ImageBrush (exemplar-based editing as inpainting of a 2x2
grid), the procedural edits it learns from examples, and its metrics.

* :mod:`repro.diffusion.imagebrush` — the grid, the visual prompting encoder, the diffusers UNet
  and schedulers, training through :func:`repro.train.fit`, guided DDIM sampling, and the
  full-scale Stable Diffusion inpainting path;
* :mod:`repro.diffusion.transforms` — flips, rotations, inversion, shifts, thickening, colour
  changes and their compositions, on scikit-learn digits and generated shapes;
* :mod:`repro.diffusion.metrics` — per-pixel error, SSIM, edit identification, a digit
  classifier for identity, and the baselines.

Names are exported lazily, so ``import repro.diffusion`` imports neither torch nor diffusers.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    **{name: "imagebrush" for name in (
        "ImageBrushConfig", "ImageBrush", "VisualPromptEncoder", "BoxEncoder",
        "fourier_features", "make_grid", "split_grid", "hole_mask", "build_scheduler",
        "training_batch", "diffusion_loss", "train_imagebrush", "trained_imagebrush", "sample",
        "to_model_range", "to_image_range", "load_inpainting_pipeline", "image_table",
        "inpaint_with_pipeline", "PAPER_SCALE", "SD_INPAINTING_MANIFEST", "EDIT_DATA_MANIFEST",
        "check_edit_data", "training_data")},
    **{name: "transforms" for name in (
        "PRIMITIVES", "SEEN_TRANSFORMS", "HELD_OUT_TRANSFORMS", "apply_transform",
        "check_transforms", "tile_pool", "random_shapes", "sample_edit_grids", "EditGrids",
        "TilePool")},
    **{name: "metrics" for name in (
        "quadrant_mse", "ssim", "edit_identification_accuracy", "DigitClassifier",
        "copy_baseline", "evaluate_edits", "evaluation_grids", "prompt_fidelity_grids",
        "image_fidelity_grids")},
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
