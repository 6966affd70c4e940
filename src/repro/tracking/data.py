"""Tracking data: a seeded generator of hard-enough sequences, the benchmarks' file formats, and
the crops a one-stream tracker trains and tracks on.

Generator (``GeneratorConfig``, ``make_bank``, ``render``). Every sequence is a *specification*
(background, trajectories, colours, events) held as tensors; frames are rendered from it on
demand with ``grid_sample``, so training pairs cost no disk and the test set is a pure function
of its seed. Per sequence:

- background: a grey level (0.35-0.65), low-frequency colour blobs (6x6 noise, bicubic, +-0.12),
  a weak 24x24 texture (+-0.04); per frame a global brightness factor (log-normal, sigma 0.1)
  and pixel noise (sigma 0.05);
- target: a scikit-learn digit (8x8) sampled into its box (the box is the digit's 8x8 extent),
  16-24 px, aspect +-15 %, scale oscillating by exp(+-scale_amplitude); motion is an AR(1)
  velocity bouncing off the borders;
- appearance change (``appearance_change`` prob.): the target's saturated colour drifts to a
  second colour over the sequence;
- distractors: 1-2 digits of other classes with the same motion model drawn under the target;
  with ``similar_distractor`` prob. one of them has the target's colour;
- occlusion (``occlusion`` prob.): a textured block slides across the target; frames where it
  covers the whole box are flagged ``full_occlusion``;
- out of view (``out_of_view`` prob.): the target leaves through the nearest border and comes
  back; frames with < 5 % of the box inside the image are flagged ``out_of_view``.

Invisible frames (fully occluded or out of view) get the box ``0,0,0,0`` in the written
ground truth, as LaSOT does; other boxes are clipped to the image.

Formats (``write_lasot``/``read_lasot_sequence``, ``write_got10k``/``read_got10k_sequence``,
``write_trackingnet``/``read_trackingnet_sequence``): the layouts of vision_shared.md Sec. 7.2.
A malformed annotation raises :class:`AnnotationError` naming the file and line.

Crops (``crop``, ``box_to_crop``, ``box_from_crop``, ``sample_pairs``): square crops of side
factor * sqrt(w h) around a box (HiT/SeqTrack: template factor 2, search factor 4), resized
bilinearly, zero padding after normalising with (x - 0.5) / 0.25; the box maps into the crop
and back exactly (a test checks the round trip).

Cached artifacts (``repro.cache``, keyed by parameters, seed and library version):
``generated_benchmark`` (the test set, in LaSOT's layout) and ``training_set`` (the rendered
frames of the training sequences), shared by the SeqTrack and HiT notebooks.

Departures from the real benchmarks: 96 x 96 frames and 50-60 frames per sequence (LaSOT: 2,500
frames on average at 640 x 360 and more); digits instead of 70 object categories.
"""

from __future__ import annotations

import configparser
import dataclasses
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from repro.errors import DataUnavailableError, ParameterError, ReproError
from repro.io import atomic_write_text

__all__ = [
    "AnnotationError", "GeneratorConfig", "SequenceBank", "TrackingSequence", "make_bank",
    "render", "render_sequences", "generated_benchmark", "training_set", "write_lasot",
    "write_got10k", "write_trackingnet", "read_lasot", "read_lasot_sequence",
    "read_got10k_sequence", "read_trackingnet_sequence", "require_dataset", "crop",
    "box_to_crop", "box_from_crop", "jitter_boxes", "sample_pairs", "normalize", "crop_side",
    "PairBatch", "oracle_crops", "ATTRIBUTES",
]

#: Per-sequence attributes the generator records (LaSOT's names where one fits).
ATTRIBUTES = ("full_occlusion", "out_of_view", "similar_distractor", "appearance_change",
              "scale_variation")


class AnnotationError(ReproError):
    """A tracking annotation file is missing, malformed or inconsistent."""


# --------------------------------------------------------------------------- generator
@dataclass
class GeneratorConfig:
    frame_size: int = 96
    num_frames: int = 50
    min_size: float = 16.0
    max_size: float = 24.0
    aspect_jitter: float = 0.15
    scale_amplitude: float = 0.3  # scale oscillates by exp(+-scale_amplitude)
    speed_noise: float = 0.6  # px, AR(1) velocity noise
    velocity_decay: float = 0.9
    border: float = 12.0
    max_distractors: int = 2
    similar_distractor: float = 0.35  # probability that one distractor has the target's colour
    appearance_change: float = 0.5
    occlusion: float = 0.4
    out_of_view: float = 0.3
    noise_sigma: float = 0.05
    brightness_sigma: float = 0.1
    digit_split: str = "train"  # train | test | all: digits i % 5 == 0 are test digits

    def __post_init__(self) -> None:
        if self.digit_split not in ("train", "test", "all"):
            raise ParameterError(f"digit_split must be train, test or all, got "
                                 f"{self.digit_split!r}")
        if self.num_frames < 30:
            raise ParameterError(f"num_frames must be >= 30 (events need room), got "
                                 f"{self.num_frames}")
        if not 0 < self.min_size <= self.max_size < self.frame_size / 2:
            raise ParameterError("need 0 < min_size <= max_size < frame_size / 2")


@dataclass
class SequenceBank:
    """Specifications of ``S`` sequences of ``T`` frames (all tensors on the CPU).

    Objects are stored in drawing order: distractors, then the target, then the occluder.
    ``boxes`` are (x, y, w, h) in pixels, unclipped; ``appearance`` is RGB + alpha on an 8x8
    grid per object; ``active`` says whether an object exists in a frame.
    """

    config: GeneratorConfig
    background: Tensor  # (S, 3, H, W)
    boxes: Tensor  # (S, K, T, 4), object K - 2 is the target, K - 1 the occluder
    appearance: Tensor  # (S, K, 4, 8, 8)
    color: Tensor  # (S, K, T, 3) multiplies the RGB of the appearance
    active: Tensor  # (S, K, T) bool
    brightness: Tensor  # (S, T)
    full_occlusion: Tensor  # (S, T) bool
    out_of_view: Tensor  # (S, T) bool
    attributes: Tensor  # (S, len(ATTRIBUTES)) bool
    target_index: int = -2

    @property
    def num_sequences(self) -> int:
        return self.background.shape[0]

    @property
    def num_frames(self) -> int:
        return self.boxes.shape[2]

    @property
    def target_boxes(self) -> Tensor:
        return self.boxes[:, self.target_index]

    @property
    def visible(self) -> Tensor:
        return ~(self.full_occlusion | self.out_of_view)

    def ground_truth(self) -> Tensor:
        """Boxes as a benchmark writes them: clipped to the image, 0,0,0,0 when invisible."""
        size = self.config.frame_size
        b = self.target_boxes
        x1 = b[..., 0].clamp(0, size)
        y1 = b[..., 1].clamp(0, size)
        x2 = (b[..., 0] + b[..., 2]).clamp(0, size)
        y2 = (b[..., 1] + b[..., 3]).clamp(0, size)
        gt = torch.stack([x1, y1, x2 - x1, y2 - y1], -1)
        return torch.where(self.visible[..., None], gt, torch.zeros_like(gt))


def _digits(split: str) -> Tensor:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(bunch.target)
    idx = torch.arange(len(labels))
    keep = {"train": idx % 5 != 0, "test": idx % 5 == 0, "all": idx >= 0}[split]
    return images[keep], labels[keep]


def _saturated_colors(n: int, g: torch.Generator) -> Tensor:
    """Colours with every channel near 0.05 or 0.95, never all equal (never grey)."""
    bits = torch.randint(0, 6, (n,), generator=g) + 1  # 1..6: not 000, not 111
    rgb = torch.stack([(bits >> k) & 1 for k in range(3)], -1).float()
    return 0.05 + 0.9 * rgb + 0.04 * torch.randn(n, 3, generator=g)


def _trajectory(n: int, t: int, cfg: GeneratorConfig, g: torch.Generator) -> Tensor:
    """(n, t, 4) boxes with AR(1) motion bouncing off the borders and scale oscillation."""
    size = cfg.frame_size
    base = cfg.min_size + (cfg.max_size - cfg.min_size) * torch.rand(n, generator=g)
    aspect = 1 + cfg.aspect_jitter * (2 * torch.rand(n, generator=g) - 1)
    w0, h0 = base * aspect.sqrt(), base / aspect.sqrt()
    period = 20 + 30 * torch.rand(n, generator=g)
    phase = 2 * math.pi * torch.rand(n, generator=g)
    amplitude = cfg.scale_amplitude * (0.5 + 0.5 * torch.rand(n, generator=g))
    steps = torch.arange(t, dtype=torch.float32)
    scale = torch.exp(amplitude[:, None] * torch.sin(2 * math.pi * steps / period[:, None]
                                                     + phase[:, None]))
    lo, hi = cfg.border, size - cfg.border
    pos = lo + (hi - lo) * torch.rand(n, 2, generator=g)
    vel = 2 * torch.randn(n, 2, generator=g)
    centers = torch.empty(n, t, 2)
    for k in range(t):
        centers[:, k] = pos
        vel = cfg.velocity_decay * vel + cfg.speed_noise * torch.randn(n, 2, generator=g)
        vel = vel.clamp(-4, 4)
        pos = pos + vel
        bounce_lo, bounce_hi = pos < lo, pos > hi
        vel = torch.where(bounce_lo | bounce_hi, -vel, vel)
        pos = torch.where(bounce_lo, 2 * lo - pos, torch.where(bounce_hi, 2 * hi - pos, pos))
    w, h = w0[:, None] * scale, h0[:, None] * scale
    return torch.stack([centers[..., 0] - w / 2, centers[..., 1] - h / 2, w, h], -1)


def _event_window(t: int, g: torch.Generator, length: tuple[int, int]) -> tuple[int, int]:
    span = int(torch.randint(length[0], length[1] + 1, (1,), generator=g))
    start = int(torch.randint(5, t - span - 2, (1,), generator=g))
    return start, span


def make_bank(num_sequences: int, config: GeneratorConfig | None = None, *,
              seed: int = 0) -> SequenceBank:
    """Generate ``num_sequences`` sequence specifications (a pure function of ``seed``)."""
    cfg = config or GeneratorConfig()
    if num_sequences < 1:
        raise ParameterError(f"num_sequences must be >= 1, got {num_sequences}")
    g = torch.Generator().manual_seed(seed)
    s, t, size = num_sequences, cfg.num_frames, cfg.frame_size
    k = cfg.max_distractors + 2
    digits, labels = _digits(cfg.digit_split)

    # background: grey level + colour blobs + weak texture
    grey = 0.35 + 0.3 * torch.rand(s, 1, 1, 1, generator=g)
    blobs = F.interpolate(0.12 * (2 * torch.rand(s, 3, 6, 6, generator=g) - 1), size=(size, size),
                          mode="bicubic", align_corners=False)
    texture = F.interpolate(0.04 * (2 * torch.rand(s, 3, 24, 24, generator=g) - 1),
                            size=(size, size), mode="bilinear", align_corners=False)
    background = (grey + blobs + texture).clamp(0, 1)

    boxes = torch.zeros(s, k, t, 4)
    appearance = torch.zeros(s, k, 4, 8, 8)
    color = torch.ones(s, k, t, 3)
    active = torch.zeros(s, k, t, dtype=torch.bool)
    attributes = torch.zeros(s, len(ATTRIBUTES), dtype=torch.bool)
    target, occluder = k - 2, k - 1

    target_digit = torch.randint(0, len(digits), (s,), generator=g)
    appearance[:, target, :3] = 1.0
    appearance[:, target, 3] = digits[target_digit]
    boxes[:, target] = _trajectory(s, t, cfg, g)
    active[:, target] = True
    c0, c1 = _saturated_colors(s, g), _saturated_colors(s, g)
    drift = torch.rand(s, generator=g) < cfg.appearance_change
    same = (c0 - c1).abs().max(-1).values < 0.3
    c1 = torch.where((drift & same)[:, None], 1.0 - c1, c1)  # a drift must change the colour
    ramp = torch.linspace(0, 1, t)[None, :, None]
    color[:, target] = torch.where(drift[:, None, None], c0[:, None] * (1 - ramp)
                                   + c1[:, None] * ramp, c0[:, None].expand(s, t, 3))
    attributes[:, ATTRIBUTES.index("appearance_change")] = drift

    for d in range(cfg.max_distractors):
        exists = torch.rand(s, generator=g) < (1.0 if d == 0 else 0.5)
        pick = torch.randint(0, len(digits), (s,), generator=g)
        for _ in range(20):  # a distractor is a different class from the target
            clash = labels[pick] == labels[target_digit]
            if not clash.any():
                break
            pick = torch.where(clash, torch.randint(0, len(digits), (s,), generator=g), pick)
        appearance[:, d, :3] = 1.0
        appearance[:, d, 3] = digits[pick]
        boxes[:, d] = _trajectory(s, t, cfg, g)
        active[:, d] = exists[:, None]
        own = _saturated_colors(s, g)
        similar = (torch.rand(s, generator=g) < cfg.similar_distractor) & exists & (d == 0)
        color[:, d] = torch.where(similar[:, None, None], color[:, target],
                                  own[:, None].expand(s, t, 3))
        attributes[:, ATTRIBUTES.index("similar_distractor")] |= similar

    # out of view: the target leaves through the nearest border and comes back
    out_of_view = torch.zeros(s, t, dtype=torch.bool)
    leaves = torch.rand(s, generator=g) < cfg.out_of_view
    for i in torch.nonzero(leaves).flatten().tolist():
        start, span = _event_window(t, g, (8, 14))
        tb = boxes[i, target]
        mid = start + span // 2
        cx, cy = tb[mid, 0] + tb[mid, 2] / 2, tb[mid, 1] + tb[mid, 3] / 2
        dists = torch.stack([cx, size - cx, cy, size - cy])
        side = int(dists.argmin())
        push = float(dists[side]) + float(tb[mid, 2:].max()) + 4.0
        for j in range(start, start + span):
            a = 1 - abs(j - (start + (span - 1) / 2)) / ((span - 1) / 2 + 1)  # triangle
            shift = min(1.0, 1.6 * a) * push
            if side == 0:
                tb[j, 0] -= shift
            elif side == 1:
                tb[j, 0] += shift
            elif side == 2:
                tb[j, 1] -= shift
            else:
                tb[j, 1] += shift
    tb = boxes[:, target]
    inside_w = (torch.minimum(tb[..., 0] + tb[..., 2], torch.tensor(float(size)))
                - tb[..., 0].clamp(min=0)).clamp(min=0)
    inside_h = (torch.minimum(tb[..., 1] + tb[..., 3], torch.tensor(float(size)))
                - tb[..., 1].clamp(min=0)).clamp(min=0)
    out_of_view = (inside_w * inside_h) < 0.05 * tb[..., 2] * tb[..., 3]
    attributes[:, ATTRIBUTES.index("out_of_view")] = out_of_view.any(1)

    # occlusion: a textured block slides across the target
    occluded = torch.rand(s, generator=g) < cfg.occlusion
    appearance[:, occluder, 3] = 1.0
    appearance[:, occluder, :3] = (0.3 + 0.4 * torch.rand(s, 1, 1, 1, generator=g)
                                   + 0.15 * torch.rand(s, 3, 8, 8, generator=g))
    for i in torch.nonzero(occluded).flatten().tolist():
        start, span = _event_window(t, g, (10, 16))
        direction = torch.randn(2, generator=g)
        direction = direction / direction.norm()
        for j in range(start, start + span):
            tbj = boxes[i, target, j]
            side = 1.7 * float(tbj[2:].max())
            frac = (j - start) / (span - 1) * 2 - 1  # -1 .. 1 across the window
            cx = tbj[0] + tbj[2] / 2 + frac * 1.2 * side * direction[0]
            cy = tbj[1] + tbj[3] / 2 + frac * 1.2 * side * direction[1]
            boxes[i, occluder, j] = torch.stack([cx - side / 2, cy - side / 2,
                                                 torch.tensor(side), torch.tensor(side)])
            active[i, occluder, j] = True
    ob = boxes[:, occluder]
    covers = ((ob[..., 0] <= tb[..., 0]) & (ob[..., 1] <= tb[..., 1])
              & (ob[..., 0] + ob[..., 2] >= tb[..., 0] + tb[..., 2])
              & (ob[..., 1] + ob[..., 3] >= tb[..., 1] + tb[..., 3]))
    full_occlusion = covers & active[:, occluder] & ~out_of_view
    attributes[:, ATTRIBUTES.index("full_occlusion")] = full_occlusion.any(1)
    area = tb[..., 2] * tb[..., 3]
    attributes[:, ATTRIBUTES.index("scale_variation")] = (area.max(1).values
                                                          / area.min(1).values) > 2.0
    brightness = torch.exp(cfg.brightness_sigma * torch.randn(s, t, generator=g))
    return SequenceBank(cfg, background, boxes, appearance, color, active, brightness,
                        full_occlusion, out_of_view, attributes)


def render(bank: SequenceBank, sequence: Tensor, frame: Tensor,
           generator: torch.Generator | None = None) -> Tensor:
    """Render frames ``frame[i]`` of sequences ``sequence[i]``: (N, 3, H, W) floats in [0, 1]."""
    sequence, frame = torch.as_tensor(sequence).long(), torch.as_tensor(frame).long()
    size = bank.config.frame_size
    n = sequence.numel()
    image = bank.background[sequence] * bank.brightness[sequence, frame][:, None, None, None]
    pixel = torch.arange(size, dtype=torch.float32) + 0.5
    for obj in range(bank.boxes.shape[1]):
        on = bank.active[sequence, obj, frame]
        if not on.any():
            continue
        box = bank.boxes[sequence, obj, frame]
        box = torch.where(on[:, None], box, torch.tensor([-64.0, -64.0, 1.0, 1.0]))  # off-image
        gx = (pixel[None] - box[:, :1]) / box[:, 2:3] * 2 - 1  # (N, W)
        gy = (pixel[None] - box[:, 1:2]) / box[:, 3:4] * 2 - 1  # (N, H)
        grid = torch.stack([gx[:, None, :].expand(n, size, size),
                            gy[:, :, None].expand(n, size, size)], -1)
        sampled = F.grid_sample(bank.appearance[sequence, obj], grid, mode="bilinear",
                                padding_mode="zeros", align_corners=False)
        alpha = sampled[:, 3:] * on[:, None, None, None]
        rgb = sampled[:, :3] * bank.color[sequence, obj, frame][:, :, None, None]
        image = image * (1 - alpha) + rgb * alpha
    if bank.config.noise_sigma:
        noise = torch.randn(image.shape, generator=generator)
        image = image + bank.config.noise_sigma * noise
    return image.clamp(0, 1)


def render_sequences(bank: SequenceBank, *, seed: int = 0) -> Tensor:
    """All frames of all sequences as uint8, (S, T, H, W, 3)."""
    g = torch.Generator().manual_seed(seed)
    s, t = bank.num_sequences, bank.num_frames
    out = torch.empty(s, t, bank.config.frame_size, bank.config.frame_size, 3, dtype=torch.uint8)
    for i in range(s):
        frames = render(bank, torch.full((t,), i), torch.arange(t), g)
        out[i] = (frames * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    return out


# --------------------------------------------------------------------------- sequences
@dataclass
class TrackingSequence:
    """One sequence as a benchmark stores it: frames (paths, or an array (T, H, W, 3) uint8),
    ground-truth boxes (T, 4) x, y, w, h, and the visibility flags where the format has them."""

    name: str
    frames: list[Path] | np.ndarray
    boxes: np.ndarray
    visible: np.ndarray | None = None
    attributes: dict[str, bool] = field(default_factory=dict)
    cover: np.ndarray | None = None  # GOT-10k cover.label (0-8), None elsewhere

    def __len__(self) -> int:
        return len(self.frames)

    def load_frames(self) -> np.ndarray:
        """(T, H, W, 3) uint8."""
        if isinstance(self.frames, np.ndarray):
            return self.frames
        from PIL import Image

        arrays = []
        for path in self.frames:
            try:
                with Image.open(path) as im:
                    arrays.append(np.asarray(im.convert("RGB")))
            except (OSError, ValueError) as err:
                raise AnnotationError(f"{path}: not a readable image ({err}); re-extract the "
                                      "sequence from its archive") from err
        return np.stack(arrays)


def _write_jpegs(folder: Path, frames: np.ndarray, start: int, digits: int = 8) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{k + start:0{digits}d}.jpg", quality=95,
                                    subsampling=0)


def _box_lines(boxes: np.ndarray) -> str:
    return "".join(",".join(f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}" for v in b)
                   + "\n" for b in boxes)


def _finish_dir(tmp: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def write_lasot(root: str | Path, frames: np.ndarray, boxes: np.ndarray,
                full_occlusion: np.ndarray, out_of_view: np.ndarray, *,
                category: str = "digit", attributes: np.ndarray | None = None) -> list[Path]:
    """Write sequences in LaSOT's layout ``root/<category>/<category>-<k>/`` (k from 1):
    ``img/00000001.jpg ...``, ``groundtruth.txt``, ``full_occlusion.txt`` and
    ``out_of_view.txt`` (one line of 0/1 flags each) and ``nlp.txt``. ``attributes`` (our
    addition, LaSOT keeps its attributes in a separate table) goes to ``attributes.txt``.
    Each sequence folder is written under a temporary name and moved into place."""
    root = Path(root)
    paths = []
    for i in range(len(frames)):
        name = f"{category}-{i + 1}"
        target = root / category / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
        try:
            _write_jpegs(tmp / "img", np.asarray(frames[i]), start=1)
            (tmp / "groundtruth.txt").write_text(_box_lines(np.asarray(boxes[i])))
            for fname, flags in (("full_occlusion.txt", full_occlusion[i]),
                                 ("out_of_view.txt", out_of_view[i])):
                (tmp / fname).write_text(",".join(str(int(f)) for f in flags) + "\n")
            (tmp / "nlp.txt").write_text(f"the {category} drawn in colour\n")
            if attributes is not None:
                on = [a for a, flag in zip(ATTRIBUTES, attributes[i]) if flag]
                (tmp / "attributes.txt").write_text(",".join(on) + "\n")
            _finish_dir(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        paths.append(target)
    return paths


def _read_boxes(path: Path, min_rows: int = 1) -> np.ndarray:
    if not path.is_file():
        raise AnnotationError(f"{path}: missing; the sequence folder is incomplete")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.replace("\t", ",").replace(" ", ",").split(",")
        parts = [p for p in parts if p != ""]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise AnnotationError(f"{path}, line {number}: {line!r} is not four numbers "
                                  "x,y,w,h") from None
        if len(values) != 4 or any(math.isnan(v) for v in values):
            raise AnnotationError(f"{path}, line {number}: expected four numbers x,y,w,h, got "
                                  f"{line!r}")
        if values[2] < 0 or values[3] < 0:
            raise AnnotationError(f"{path}, line {number}: negative width or height {line!r}")
        rows.append(values)
    if len(rows) < min_rows:
        raise AnnotationError(f"{path}: no boxes")
    return np.asarray(rows, dtype=np.float64)


def _read_flag_line(path: Path, length: int) -> np.ndarray:
    if not path.is_file():
        raise AnnotationError(f"{path}: missing; the sequence folder is incomplete")
    text = path.read_text().strip()
    try:
        flags = np.asarray([int(v) for v in text.replace("\n", ",").split(",") if v.strip()])
    except ValueError:
        raise AnnotationError(f"{path}: expected comma-separated 0/1 flags") from None
    if len(flags) != length or not np.isin(flags, (0, 1)).all():
        raise AnnotationError(f"{path}: expected {length} flags of 0/1 (one per frame of "
                              f"groundtruth.txt), got {len(flags)}")
    return flags.astype(bool)


def read_lasot_sequence(folder: str | Path) -> TrackingSequence:
    """Read one LaSOT sequence folder (``<category>/<category>-<k>``)."""
    folder = Path(folder)
    boxes = _read_boxes(folder / "groundtruth.txt")
    n = len(boxes)
    occ = _read_flag_line(folder / "full_occlusion.txt", n)
    oov = _read_flag_line(folder / "out_of_view.txt", n)
    frames = sorted((folder / "img").glob("*.jpg"))
    if len(frames) != n:
        raise AnnotationError(f"{folder}: {len(frames)} frames in img/ but {n} boxes in "
                              "groundtruth.txt")
    attributes = {"full_occlusion": bool(occ.any()), "out_of_view": bool(oov.any())}
    att_file = folder / "attributes.txt"
    if att_file.is_file():
        named = {a for a in att_file.read_text().strip().split(",") if a}
        unknown = named - set(ATTRIBUTES)
        if unknown:
            raise AnnotationError(f"{att_file}: unknown attribute(s) {sorted(unknown)}")
        attributes.update({a: a in named for a in ATTRIBUTES})
    return TrackingSequence(folder.name, frames, boxes, ~(occ | oov), attributes)


def read_lasot(root: str | Path, names: list[str] | None = None) -> list[TrackingSequence]:
    """All sequences under a LaSOT root (``root/<category>/<category>-<k>``), sorted by name,
    or the ``names`` given (LaSOT's test split lists 280 of them)."""
    root = Path(root)
    if names is None:
        folders = sorted(p.parent for p in root.glob("*/*/groundtruth.txt"))
    else:
        folders = [root / n.rsplit("-", 1)[0] / n for n in names]
    if not folders:
        raise AnnotationError(f"{root}: no <category>/<category>-<k>/groundtruth.txt found; "
                              "is this a LaSOT root?")
    return [read_lasot_sequence(f) for f in folders]


def write_got10k(root: str | Path, frames: np.ndarray, boxes: np.ndarray,
                 visible: np.ndarray, *, split: str = "val",
                 classes: list[str] | None = None) -> list[Path]:
    """Write sequences in GOT-10k's layout ``root/<split>/GOT-10k_<Split>_<6 digits>/``:
    frames ``00000001.jpg ...``, ``groundtruth.txt``, ``absence.label``, ``cover.label``
    (8 = fully visible, 0 = invisible: our generator knows only those two), ``cut_by_image.label``
    and ``meta_info.ini``; plus ``list.txt`` in the split folder."""
    base = Path(root) / split
    base.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(frames)):
        name = f"GOT-10k_{split.capitalize()}_{i + 1:06d}"
        target = base / name
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=base))
        try:
            vis = np.asarray(visible[i]).astype(bool)
            _write_jpegs(tmp, np.asarray(frames[i]), start=1)
            (tmp / "groundtruth.txt").write_text(_box_lines(np.asarray(boxes[i])))
            (tmp / "absence.label").write_text("".join(f"{int(not v)}\n" for v in vis))
            (tmp / "cover.label").write_text("".join(f"{8 if v else 0}\n" for v in vis))
            (tmp / "cut_by_image.label").write_text("".join("0\n" for _ in vis))
            meta = configparser.ConfigParser()
            meta["METAINFO"] = {"object_class": (classes or ["digit"] * len(frames))[i],
                                "motion_class": "moving", "resolution":
                                f"({frames[i].shape[2]}, {frames[i].shape[1]})"}
            with open(tmp / "meta_info.ini", "w") as f:
                meta.write(f)
            _finish_dir(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        paths.append(target)
    atomic_write_text(base / "list.txt", "".join(p.name + "\n" for p in paths))
    return paths


def _read_label(path: Path, length: int, allowed: range) -> np.ndarray:
    if not path.is_file():
        raise AnnotationError(f"{path}: missing; the sequence folder is incomplete")
    try:
        values = np.asarray([int(v) for v in path.read_text().split()])
    except ValueError:
        raise AnnotationError(f"{path}: expected one integer per line") from None
    if len(values) != length or not np.isin(values, list(allowed)).all():
        raise AnnotationError(f"{path}: expected {length} values in {allowed.start}.."
                              f"{allowed.stop - 1}, one per frame, got {len(values)}")
    return values


def read_got10k_sequence(folder: str | Path) -> TrackingSequence:
    """Read one GOT-10k sequence folder. In the test split only the first box is given; then
    the labels are absent too and ``boxes`` has one row."""
    folder = Path(folder)
    boxes = _read_boxes(folder / "groundtruth.txt")
    frames = sorted(folder.glob("*.jpg"))
    if not frames:
        raise AnnotationError(f"{folder}: no frames (*.jpg)")
    if len(boxes) == 1 and len(frames) > 1:  # test split: initial box only
        return TrackingSequence(folder.name, frames, boxes)
    if len(frames) != len(boxes):
        raise AnnotationError(f"{folder}: {len(frames)} frames but {len(boxes)} boxes")
    absence = _read_label(folder / "absence.label", len(boxes), range(2))
    cover = _read_label(folder / "cover.label", len(boxes), range(9))
    return TrackingSequence(folder.name, frames, boxes, (absence == 0) & (cover > 0),
                            {"full_occlusion": bool((cover == 0).any())}, cover)


def write_trackingnet(root: str | Path, frames: np.ndarray, boxes: np.ndarray, *,
                      split: str = "TEST", names: list[str] | None = None) -> list[Path]:
    """Write sequences in TrackingNet's layout: ``root/<split>/anno/<seq>.txt`` and
    ``root/<split>/frames/<seq>/<k>.jpg`` (k from 0, no zero padding)."""
    base = Path(root) / split
    paths = []
    for i in range(len(frames)):
        name = (names or [f"seq_{j:04d}" for j in range(len(frames))])[i]
        folder = base / "frames" / name
        folder.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        for k, frame in enumerate(np.asarray(frames[i])):
            Image.fromarray(frame).save(folder / f"{k}.jpg", quality=95, subsampling=0)
        (base / "anno").mkdir(parents=True, exist_ok=True)
        atomic_write_text(base / "anno" / f"{name}.txt", _box_lines(np.asarray(boxes[i])))
        paths.append(folder)
    return paths


def read_trackingnet_sequence(root: str | Path, name: str, split: str = "TEST"
                              ) -> TrackingSequence:
    """Read TrackingNet sequence ``name`` of ``split`` (frames sorted numerically)."""
    base = Path(root) / split
    boxes = _read_boxes(base / "anno" / f"{name}.txt")
    folder = base / "frames" / name
    frames = list(folder.glob("*.jpg"))
    try:
        frames.sort(key=lambda p: int(p.stem))
    except ValueError:
        raise AnnotationError(f"{folder}: frame names must be integers (0.jpg, 1.jpg, ...)"
                              ) from None
    if not frames:
        raise AnnotationError(f"{folder}: no frames (*.jpg)")
    if len(boxes) not in (1, len(frames)):
        raise AnnotationError(f"{base / 'anno' / (name + '.txt')}: {len(boxes)} boxes for "
                              f"{len(frames)} frames")
    return TrackingSequence(name, frames, boxes)


def require_dataset(name: str, root: str | Path | None = None) -> Path:
    """The folder of real data set ``name`` (lasot, got10k, trackingnet): ``root`` if given,
    else ``$REPRO_DATA/<name>``. Missing data stops here with the manifest to read; the full
    scale never falls back to generated sequences."""
    from repro.data.manifest import data_root, load_manifest

    manifest = load_manifest(name)
    folder = Path(root) if root is not None else data_root() / name
    if not folder.is_dir() or not any(folder.iterdir()):
        raise DataUnavailableError(
            f"{name} is not at {folder}. It cannot be downloaded automatically; see "
            f"{manifest.path} (data/manifests/{name}.yaml): {manifest.manual.strip()}")
    return folder


# --------------------------------------------------------------------------- cached benchmark
def generated_benchmark(num_sequences: int = 24, config: GeneratorConfig | None = None, *,
                        seed: int = 1000) -> Path:
    """The generated test benchmark, written once in LaSOT's layout under ``repro.cache``'s
    folder (keyed by the parameters, seed and library version) and returned as its root.
    Test sequences use the test digits (never seen in training)."""
    from repro.cache import cache_dir, cache_key

    cfg = config or GeneratorConfig(digit_split="test")
    params = {"num_sequences": num_sequences, "config": dataclasses.asdict(cfg), "seed": seed,
              "format": "lasot-2"}
    root = cache_dir() / cache_key("tracking-benchmark", params)
    if (root / "complete").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        bank = make_bank(num_sequences, cfg, seed=seed)
        frames = render_sequences(bank, seed=seed + 1).numpy()
        write_lasot(tmp, frames, bank.ground_truth().numpy(), bank.full_occlusion.numpy(),
                    bank.out_of_view.numpy(), attributes=bank.attributes.numpy())
        (tmp / "complete").write_text("ok\n")
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return root


def training_set(num_sequences: int = 100, config: GeneratorConfig | None = None, *,
                 seed: int = 0) -> tuple[SequenceBank, Tensor]:
    """The generated training sequences (train digits only) and all their frames, (S, T, H, W,
    3) uint8. The frames are rendered once and cached by ``repro.cache`` (keyed by the
    parameters, seed and library version); the specifications are cheap and regenerated."""
    from repro.cache import cached_tensors

    cfg = config or GeneratorConfig(digit_split="train")
    bank = make_bank(num_sequences, cfg, seed=seed)
    params = {"num_sequences": num_sequences, "config": dataclasses.asdict(cfg), "seed": seed}
    frames = cached_tensors("tracking-train-frames", params,
                            lambda: {"frames": render_sequences(bank, seed=seed + 1)})["frames"]
    return bank, frames


# --------------------------------------------------------------------------- crops
def normalize(images: Tensor) -> Tensor:
    """(x - 0.5) / 0.25: mean grey becomes 0, so a crop's zero padding is mean grey."""
    return (images - 0.5) / 0.25


def crop(images: Tensor, centers: Tensor, sides: Tensor, out_size: int) -> Tensor:
    """Square crops of side ``sides`` (px) centred at ``centers`` (N, 2), resized to
    ``out_size`` (bilinear); outside the image is zero. ``images`` (N, C, H, W)."""
    n, _, h, w = images.shape
    step = (torch.arange(out_size, dtype=torch.float32) + 0.5) / out_size - 0.5  # in sides
    px = centers[:, :1] + sides[:, None] * step[None]  # (N, out) pixel coords
    py = centers[:, 1:2] + sides[:, None] * step[None]
    gx = px / w * 2 - 1
    gy = py / h * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(n, out_size, out_size),
                        gy[:, :, None].expand(n, out_size, out_size)], -1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def crop_side(boxes: Tensor, factor: float) -> Tensor:
    """factor * sqrt(w h): the side of HiT's and SeqTrack's square crops."""
    return factor * (boxes[..., 2] * boxes[..., 3]).clamp(min=1e-6).sqrt()


def box_to_crop(boxes: Tensor, centers: Tensor, sides: Tensor) -> Tensor:
    """Image boxes (x, y, w, h) -> boxes normalised to the crop, (x, y, w, h) in [0, 1] units
    of the crop side (0 = the crop's left/top edge)."""
    origin = centers - sides[:, None] / 2
    return torch.cat([(boxes[:, :2] - origin) / sides[:, None], boxes[:, 2:] / sides[:, None]], 1)


def box_from_crop(boxes: Tensor, centers: Tensor, sides: Tensor) -> Tensor:
    """The inverse of :func:`box_to_crop`."""
    origin = centers - sides[:, None] / 2
    return torch.cat([boxes[:, :2] * sides[:, None] + origin, boxes[:, 2:] * sides[:, None]], 1)


def jitter_boxes(boxes: Tensor, center_jitter: float, scale_jitter: float,
                 generator: torch.Generator) -> Tensor:
    """HiT/STARK jitter: size * exp(N(0,1) * scale_jitter); centre +- center_jitter *
    sqrt(w h) * U(-1/2, 1/2)."""
    n = boxes.shape[0]
    wh = boxes[:, 2:] * torch.exp(torch.randn(n, 2, generator=generator) * scale_jitter)
    side = (wh[:, 0] * wh[:, 1]).sqrt()[:, None]
    center = boxes[:, :2] + boxes[:, 2:] / 2
    center = center + center_jitter * side * (torch.rand(n, 2, generator=generator) - 0.5)
    return torch.cat([center - wh / 2, wh], 1)


def oracle_crops(sequences, *, template_size: int = 32, search_size: int = 64,
                 template_factor: float = 2.0, search_factor: float = 4.0
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """For every frame k >= 1 whose target is visible in frames k-1 and k: the first frame's
    template crop, the search crop a tracker would cut around the *ground truth* of frame k-1,
    and the true box of frame k in that crop as (cx, cy, w, h) normalised. What a tracker
    sees when its previous result was perfect (for one-step diagnostics)."""
    templates, searches, truths = [], [], []
    for seq in sequences:
        frames = normalize(torch.from_numpy(np.ascontiguousarray(seq.load_frames()))
                           .permute(0, 3, 1, 2).float() / 255.0)
        boxes = torch.as_tensor(seq.boxes, dtype=torch.float32)
        visible = torch.as_tensor(seq.visible if seq.visible is not None
                                  else np.ones(len(boxes), bool))
        keep = torch.nonzero(visible[1:] & visible[:-1]).flatten() + 1
        prev, cur = boxes[keep - 1], boxes[keep]
        centers = prev[:, :2] + prev[:, 2:] / 2
        sides = crop_side(prev, search_factor)
        searches.append(crop(frames[keep], centers, sides, search_size))
        b0 = boxes[:1]
        z = crop(frames[:1], b0[:, :2] + b0[:, 2:] / 2, crop_side(b0, template_factor),
                 template_size)
        templates.append(z.expand(len(keep), -1, -1, -1))
        rel = box_to_crop(cur, centers, sides)
        truths.append(torch.cat([rel[:, :2] + rel[:, 2:] / 2, rel[:, 2:]], 1))
    return torch.cat(templates), torch.cat(searches), torch.cat(truths)


@dataclass
class PairBatch:
    template: Tensor  # (B, 3, Zs, Zs) normalised
    search: Tensor  # (B, 3, Xs, Xs) normalised
    target: Tensor  # (B, 4) x1, y1, x2, y2 in the search crop, [0, 1], clamped


def sample_pairs(bank: SequenceBank, batch_size: int, generator: torch.Generator, *,
                 template_size: int = 32, search_size: int = 64,
                 template_factor: float = 2.0, search_factor: float = 4.0,
                 center_jitter: float = 2.5, scale_jitter: float = 0.25,
                 max_gap: int = 20, frames: Tensor | None = None) -> PairBatch:
    """Training pairs: a template crop around the ground truth of one frame and a search crop
    around a jittered box of a frame at most ``max_gap`` later/earlier, both frames visible.

    Frames are rendered on the fly, or taken from ``frames`` (``render_sequences(bank)``,
    (S, T, H, W, 3) uint8), which is cheaper when many batches are drawn."""
    s, t = bank.num_sequences, bank.num_frames
    seq = torch.randint(0, s, (batch_size,), generator=generator)
    visible = bank.visible
    t_z = torch.randint(0, t, (batch_size,), generator=generator)
    t_x = (t_z + torch.randint(-max_gap, max_gap + 1, (batch_size,), generator=generator)
           ).clamp(0, t - 1)
    for _ in range(10):  # redraw invisible frames; frame 0 is always visible
        bad_z, bad_x = ~visible[seq, t_z], ~visible[seq, t_x]
        if not (bad_z.any() or bad_x.any()):
            break
        t_z = torch.where(bad_z, torch.randint(0, t, (batch_size,), generator=generator), t_z)
        t_x = torch.where(bad_x, (t_z + torch.randint(-max_gap, max_gap + 1, (batch_size,),
                                                      generator=generator)).clamp(0, t - 1), t_x)
    t_z = torch.where(visible[seq, t_z], t_z, torch.zeros_like(t_z))
    t_x = torch.where(visible[seq, t_x], t_x, torch.zeros_like(t_x))
    both_seq, both_t = torch.cat([seq, seq]), torch.cat([t_z, t_x])
    if frames is None:
        images = render(bank, both_seq, both_t, generator)
    else:
        images = frames[both_seq, both_t].permute(0, 3, 1, 2).float() / 255.0
    images = normalize(images)
    z_frames, x_frames = images[:batch_size], images[batch_size:]
    box_z = bank.target_boxes[seq, t_z]
    box_x = bank.target_boxes[seq, t_x]
    template = crop(z_frames, box_z[:, :2] + box_z[:, 2:] / 2, crop_side(box_z, template_factor),
                    template_size)
    jittered = jitter_boxes(box_x, center_jitter, scale_jitter, generator)
    centers = jittered[:, :2] + jittered[:, 2:] / 2
    sides = crop_side(jittered, search_factor)
    search = crop(x_frames, centers, sides, search_size)
    rel = box_to_crop(box_x, centers, sides)
    target = torch.cat([rel[:, :2], rel[:, :2] + rel[:, 2:]], 1).clamp(0, 1)
    return PairBatch(template, search, target)
