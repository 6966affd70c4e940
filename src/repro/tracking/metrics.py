"""One-pass evaluation (OPE) of single-object trackers, as pytracking (HiT's and SeqTrack's
evaluation code, ``lib/test/analysis/extract_results.py``) computes it; see vision_shared.md
Sec. 7.1.

Per sequence: frame 0's prediction is replaced by the ground truth; a prediction with zero
width or height is replaced by the previous frame's; a prediction longer than the ground truth
is truncated (shorter: an error on LaSOT, zero-padded elsewhere). Frames with an invalid ground
truth (w or h = 0) or, on LaSOT, an invisible target stay in the denominator and count as
failures (IoU -1, centre error +inf). On the other benchmarks pytracking gives an invalid frame
the normalised error -1, which passes every threshold; ``dataset="lasot"`` never does that.

- success curve S(theta) = fraction of frames with IoU > theta, theta in linspace(0, 1, 21);
  **AUC** = mean of S over the 21 thresholds (a perfect tracker scores 20/21 = 0.952);
- precision curve P(tau) = fraction with centre error <= tau px, tau = 0..50; score P(20);
- normalised precision: the centre error divided element-wise by the ground-truth (w, h)
  (TrackingNet's P_norm), thresholds 0, 0.01, ..., 0.5; score at 0.2;
- curves are averaged over sequences with equal weight (not pooled over frames); per-attribute
  curves average over the sequences that have the attribute.

``got10k_ao_sr`` is GOT-10k's own protocol: frame 0 excluded, frames with cover 0 excluded,
IoUs pooled over all frames of all sequences; AO = mean IoU, SR = fraction above 0.5 / 0.75.

Values are fractions (0-1); the papers print them x100. Thresholds follow the got10k toolkit
(``np.linspace``); pytracking's ``arange(0, 1.05, 0.05)`` differs only by float rounding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from repro.errors import ParameterError

__all__ = ["IOU_THRESHOLDS", "CENTER_THRESHOLDS", "NORM_THRESHOLDS", "iou", "center_error",
           "normalized_center_error", "SequenceCurves", "sequence_curves", "OPEResult", "ope",
           "got10k_ao_sr", "jump_rate", "success_curve"]

IOU_THRESHOLDS = np.linspace(0.0, 1.0, 21)
CENTER_THRESHOLDS = np.arange(0, 51, dtype=np.float64)
NORM_THRESHOLDS = np.arange(0, 51, dtype=np.float64) / 100.0


def _boxes(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 4:
        raise ParameterError(f"{name}: expected an (N, 4) array of x, y, w, h boxes, got shape "
                             f"{a.shape}")
    return a


def iou(pred, gt) -> np.ndarray:
    """IoU of (x, y, w, h) boxes row by row (0 where the union is empty), clipped to [0, 1]."""
    pred, gt = _boxes(pred, "pred"), _boxes(gt, "gt")
    tl = np.maximum(pred[:, :2], gt[:, :2])
    br = np.minimum(pred[:, :2] + pred[:, 2:], gt[:, :2] + gt[:, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=1)
    union = pred[:, 2] * pred[:, 3] + gt[:, 2] * gt[:, 3] - inter
    out = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return np.clip(out, 0.0, 1.0)  # identical boxes can round to 1 + 2e-16


def center_error(pred, gt) -> np.ndarray:
    """Distance of the centres c = xy + (wh - 1) / 2 in pixels (pytracking's convention)."""
    pred, gt = _boxes(pred, "pred"), _boxes(gt, "gt")
    cp = pred[:, :2] + 0.5 * (pred[:, 2:] - 1.0)
    cg = gt[:, :2] + 0.5 * (gt[:, 2:] - 1.0)
    return np.linalg.norm(cp - cg, axis=1)


def normalized_center_error(pred, gt) -> np.ndarray:
    """Centre distance with both centres divided by the ground-truth (w, h) (P_norm)."""
    pred, gt = _boxes(pred, "pred"), _boxes(gt, "gt")
    cp = pred[:, :2] + 0.5 * (pred[:, 2:] - 1.0)
    cg = gt[:, :2] + 0.5 * (gt[:, 2:] - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.linalg.norm((cp - cg) / gt[:, 2:], axis=1)


def success_curve(ious) -> np.ndarray:
    """S(theta) = fraction of IoUs > theta over the 21 thresholds (pooled)."""
    ious = np.asarray(ious, dtype=np.float64).ravel()
    return (ious[:, None] > IOU_THRESHOLDS[None]).mean(0)


@dataclass
class SequenceCurves:
    success: np.ndarray  # (21,)
    precision: np.ndarray  # (51,)
    norm_precision: np.ndarray  # (51,)
    ious: np.ndarray  # per frame, -1 on invalid frames
    valid: np.ndarray  # per frame

    @property
    def auc(self) -> float:
        return float(self.success.mean())


def sequence_curves(pred, gt, visible=None, *, dataset: str = "lasot") -> SequenceCurves:
    """OPE curves of one sequence under pytracking's rules (see the module docstring)."""
    pred, gt = _boxes(pred, "pred").copy(), _boxes(gt, "gt")
    if np.isnan(pred).any() or (pred[:, 2:] < 0).any():
        raise ParameterError("pred: NaN or negative width/height in the tracker's boxes")
    for i in range(1, len(pred)):
        if (pred[i, 2:] == 0).any():
            pred[i] = pred[i - 1]
    if len(pred) > len(gt):
        pred = pred[:len(gt)]
    elif len(pred) < len(gt):
        if dataset == "lasot":
            raise ParameterError(f"{len(pred)} predicted boxes for {len(gt)} frames (LaSOT "
                                 "needs one box per frame)")
        pred = np.concatenate([pred, np.zeros((len(gt) - len(pred), 4))])
    pred[0] = gt[0]
    valid = (gt[:, 2] > 0) & (gt[:, 3] > 0)
    if visible is not None:
        visible = np.asarray(visible, dtype=bool)
        if visible.shape != (len(gt),):
            raise ParameterError(f"visible: expected {len(gt)} flags, got {visible.shape}")
        valid &= visible
    ious = iou(pred, gt)
    err = center_error(pred, gt)
    err_norm = normalized_center_error(pred, gt)
    ious[~valid] = -1.0
    err[~valid] = np.inf
    err_norm[~valid] = -1.0  # pytracking's quirk: a hit for P_norm on non-LaSOT data sets
    if dataset == "lasot":
        err_norm[~valid] = np.inf
    n = len(gt)
    success = (ious[:, None] > IOU_THRESHOLDS[None]).sum(0) / n
    precision = (err[:, None] <= CENTER_THRESHOLDS[None]).sum(0) / n
    norm_precision = (err_norm[:, None] <= NORM_THRESHOLDS[None]).sum(0) / n
    return SequenceCurves(success, precision, norm_precision, ious, valid)


@dataclass
class OPEResult:
    """Curves of one tracker over a benchmark; scores as properties."""

    names: list[str]
    curves: list[SequenceCurves]
    attributes: list[dict[str, bool]] = field(default_factory=list)

    def _mean(self, attr: str, keep: Sequence[bool] | None = None) -> np.ndarray:
        rows = [getattr(c, attr) for i, c in enumerate(self.curves) if keep is None or keep[i]]
        return np.mean(rows, axis=0) if rows else np.full_like(getattr(self.curves[0], attr),
                                                                np.nan)

    @property
    def success(self) -> np.ndarray:
        return self._mean("success")

    @property
    def precision(self) -> np.ndarray:
        return self._mean("precision")

    @property
    def norm_precision(self) -> np.ndarray:
        return self._mean("norm_precision")

    @property
    def auc(self) -> float:
        return float(self.success.mean())

    def precision_at(self, pixels: int = 20) -> float:
        return float(self.precision[int(pixels)])

    def norm_precision_at(self, threshold: float = 0.2) -> float:
        return float(self.norm_precision[int(round(threshold * 100))])

    def summary(self) -> dict[str, float]:
        return {"AUC": self.auc, "P@20": self.precision_at(20), "P@5": self.precision_at(5),
                "Pnorm@0.2": self.norm_precision_at(0.2),
                "OP50": float(self.success[10]), "OP75": float(self.success[15])}

    def per_sequence(self) -> list[dict[str, float | str]]:
        return [{"sequence": n, "AUC": c.auc, "P@20": float(c.precision[20]),
                 "mean IoU": float(c.ious[c.valid].mean()) if c.valid.any() else float("nan")}
                for n, c in zip(self.names, self.curves)]

    def per_attribute(self, attributes: Sequence[str]) -> dict[str, float]:
        """AUC over the sequences with each attribute (NaN where none has it)."""
        out = {}
        for a in attributes:
            keep = [bool(att.get(a, False)) for att in self.attributes]
            out[a] = float(self._mean("success", keep).mean()) if any(keep) else float("nan")
        return out


def ope(predictions: Mapping[str, np.ndarray], sequences: Sequence, *,
        dataset: str = "lasot") -> OPEResult:
    """Evaluate ``predictions[name]`` (T, 4) against each sequence (a
    :class:`repro.tracking.data.TrackingSequence`: ``name``, ``boxes``, ``visible``,
    ``attributes``)."""
    missing = [s.name for s in sequences if s.name not in predictions]
    if missing:
        raise ParameterError(f"no predictions for {len(missing)} sequence(s), e.g. "
                             f"{missing[:3]}")
    curves = [sequence_curves(predictions[s.name], s.boxes, s.visible, dataset=dataset)
              for s in sequences]
    return OPEResult([s.name for s in sequences], curves,
                     [dict(getattr(s, "attributes", {}) or {}) for s in sequences])


def plot_ope(results: Mapping[str, OPEResult], axes=None):
    """The benchmarks' two OPE figures side by side: the success plot (success rate against
    the IoU threshold, AUC in the legend) and the precision plot (against the centre-error
    threshold in pixels, P@20 in the legend). Returns the figure."""
    from repro import plotting

    if axes is None:
        fig, axes = plotting.subplots(1, 2)
    else:
        fig = axes[0].figure
    ax_success, ax_precision = axes
    for name, r in results.items():
        ax_success.plot(IOU_THRESHOLDS, r.success, label=f"{name} [{r.auc:.3f}]")
        ax_precision.plot(CENTER_THRESHOLDS, r.precision,
                          label=f"{name} [{r.precision_at(20):.3f}]")
    ax_success.set(xlabel="IoU threshold", ylabel="success rate",
                   title="Success plot (AUC in brackets)")
    ax_precision.set(xlabel="centre error threshold (px)", ylabel="precision",
                     title="Precision plot (P@20 in brackets)")
    ax_success.legend(fontsize=7)
    ax_precision.legend(fontsize=7)
    fig.tight_layout()
    return fig


def jump_rate(pred, factor: float = 0.5) -> float:
    """Fraction of frames (from frame 1) whose predicted centre moved by more than ``factor``
    times sqrt(w h) of the previous prediction: how often a tracker jumps (to a distractor,
    or anywhere) instead of following a target that moves a few pixels per frame."""
    pred = _boxes(pred, "pred")
    if len(pred) < 2:
        return 0.0
    centres = pred[:, :2] + pred[:, 2:] / 2
    step = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    size = np.sqrt(np.clip(pred[:-1, 2] * pred[:-1, 3], 0, None))
    return float((step > factor * size).mean())


def got10k_ao_sr(predictions: Sequence, ground_truths: Sequence,
                 covers: Sequence | None = None) -> dict[str, float]:
    """GOT-10k's AO, SR0.5 and SR0.75: frame 0 excluded, frames with cover 0 excluded, IoUs
    pooled over all frames of all sequences."""
    pooled = []
    for k, (pred, gt) in enumerate(zip(predictions, ground_truths)):
        pred, gt = _boxes(pred, "pred"), _boxes(gt, "gt")
        if len(pred) != len(gt):
            raise ParameterError(f"sequence {k}: {len(pred)} boxes for {len(gt)} frames")
        ious = iou(pred[1:], gt[1:])
        if covers is not None:
            ious = ious[np.asarray(covers[k])[1:] > 0]
        pooled.append(ious)
    ious = np.concatenate(pooled)
    return {"AO": float(ious.mean()), "SR0.5": float((ious > 0.5).mean()),
            "SR0.75": float((ious > 0.75).mean())}
