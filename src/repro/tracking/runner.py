"""The tracker protocol, the one-pass runner, the FPS protocol, and two trivial trackers.

A tracker is initialised on the first frame with the ground-truth box and then updated once
per frame (``init(frame, box)``, ``update(frame) -> box``; frames are (H, W, 3) uint8 arrays,
boxes x, y, w, h in pixels). Trackers that can step several independent sequences at once also
offer ``init_batch``/``update_batch``; the runner then steps all sequences of equal length
together, which gives the same boxes in a fraction of the time (for accuracy only; speed is
measured with batch 1).

FPS follows HiT's ``profile_model`` protocol in spirit: batch 1, a fixed thread count, warm-up
frames that are not timed, then the mean over the timed frames of the whole per-frame work
(crop, forward, decode, box mapping). Both wall-clock and CPU-time FPS are returned: on a
shared machine the wall clock is noisy, the CPU time much less so.

Trivial trackers: ``StaticBoxTracker`` (always the first box) and ``TemplateMatchingTracker``
(normalised cross-correlation of a fixed-size template within a window around the previous
box; the template is the first frame's or, with ``update="last"``, re-cut at every result).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from repro.errors import ParameterError
from repro.progress import progress

from .data import box_from_crop, crop, crop_side, normalize

__all__ = ["Tracker", "RunResult", "run_sequence", "run_benchmark", "measure_fps", "compare_fps",
           "StaticBoxTracker", "TemplateMatchingTracker", "CropTracker", "clip_boxes",
           "frames_to_tensor"]


@runtime_checkable
class Tracker(Protocol):
    name: str

    def init(self, frame: np.ndarray, box: np.ndarray) -> None: ...

    def update(self, frame: np.ndarray) -> np.ndarray: ...


@dataclass
class RunResult:
    boxes: dict[str, np.ndarray]  # sequence name -> (T, 4)
    seconds: dict[str, np.ndarray]  # sequence name -> (T,) wall seconds per frame


def frames_to_tensor(frames: np.ndarray) -> Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def clip_boxes(boxes: Tensor, height: int, width: int, min_size: float = 4.0) -> Tensor:
    """Keep the centre inside the image and the sides within [min_size, image size]."""
    w = boxes[:, 2].clamp(min_size, width)
    h = boxes[:, 3].clamp(min_size, height)
    cx = (boxes[:, 0] + boxes[:, 2] / 2).clamp(0, width)
    cy = (boxes[:, 1] + boxes[:, 3] / 2).clamp(0, height)
    return torch.stack([cx - w / 2, cy - h / 2, w, h], 1)


def run_sequence(tracker: Tracker, frames: np.ndarray, init_box: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Run ``tracker`` once over ``frames``; return boxes (T, 4) (row 0 = ``init_box``) and
    the wall seconds of each frame's call (init for frame 0)."""
    boxes = np.zeros((len(frames), 4))
    seconds = np.zeros(len(frames))
    t0 = time.perf_counter()
    tracker.init(frames[0], np.asarray(init_box, dtype=np.float64))
    seconds[0] = time.perf_counter() - t0
    boxes[0] = init_box
    for k in range(1, len(frames)):
        t0 = time.perf_counter()
        boxes[k] = tracker.update(frames[k])
        seconds[k] = time.perf_counter() - t0
    return boxes, seconds


def run_benchmark(tracker: Tracker, sequences: Sequence, *, batched: bool | None = None,
                  desc: str | None = None) -> RunResult:
    """One-pass evaluation run of ``tracker`` over ``sequences`` (objects with ``name``,
    ``boxes`` and ``load_frames()``). Batched when the tracker supports it and the sequences
    have equal lengths (unless ``batched=False``)."""
    can_batch = hasattr(tracker, "init_batch") and len({len(s) for s in sequences}) == 1
    if batched and not can_batch:
        raise ParameterError("batched=True needs a tracker with init_batch/update_batch and "
                             "sequences of equal length")
    batched = can_batch if batched is None else batched
    name = desc or getattr(tracker, "name", type(tracker).__name__)
    boxes, seconds = {}, {}
    if batched:
        frames = np.stack([s.load_frames() for s in sequences])  # (S, T, H, W, 3)
        init = np.stack([s.boxes[0] for s in sequences])
        out = np.zeros(frames.shape[:2] + (4,))
        times = np.zeros(frames.shape[:2])
        t0 = time.perf_counter()
        tracker.init_batch(frames[:, 0], init)
        times[:, 0] = (time.perf_counter() - t0) / len(sequences)
        out[:, 0] = init
        for k in progress(range(1, frames.shape[1]), total=frames.shape[1] - 1, desc=name,
                          unit="frames"):
            t0 = time.perf_counter()
            out[:, k] = tracker.update_batch(frames[:, k])
            times[:, k] = (time.perf_counter() - t0) / len(sequences)
        for i, s in enumerate(sequences):
            boxes[s.name], seconds[s.name] = out[i], times[i]
        return RunResult(boxes, seconds)
    for s in progress(sequences, total=len(sequences), desc=name, unit="seq"):
        boxes[s.name], seconds[s.name] = run_sequence(tracker, s.load_frames(), s.boxes[0])
    return RunResult(boxes, seconds)


def measure_fps(tracker: Tracker, frames: np.ndarray, init_box: np.ndarray, *,
                warmup: int = 10, repeat: int = 1, threads: int | None = 1) -> dict[str, float]:
    """Frames per second of ``tracker.update`` at batch 1: ``warmup`` untimed updates, then
    ``repeat`` timed passes over ``frames[1:]`` (re-initialised before each). Returns wall
    and CPU-time FPS."""
    if threads is not None:
        torch.set_num_threads(threads)
    if len(frames) < 2:
        raise ParameterError("measure_fps needs at least two frames")
    with torch.inference_mode():
        tracker.init(frames[0], init_box)
        for k in range(warmup):
            tracker.update(frames[1 + k % (len(frames) - 1)])
        wall = cpu = 0.0
        count = 0
        for _ in range(repeat):
            tracker.init(frames[0], init_box)
            w0, c0 = time.perf_counter(), time.process_time()
            for frame in frames[1:]:
                tracker.update(frame)
            wall += time.perf_counter() - w0
            cpu += time.process_time() - c0
            count += len(frames) - 1
    return {"fps_wall": count / wall, "fps_cpu": count / max(cpu, 1e-9), "frames": count,
            "threads": torch.get_num_threads()}


def compare_fps(trackers: dict[str, Tracker], frames: np.ndarray, init_box: np.ndarray, *,
                rounds: int = 3, warmup: int = 5, threads: int | None = 1
                ) -> dict[str, dict[str, float]]:
    """:func:`measure_fps` of several trackers, interleaved over ``rounds`` so that machine
    noise hits all of them alike; the median over rounds of the wall and CPU-time FPS."""
    import statistics

    seen: dict[str, list[dict[str, float]]] = {name: [] for name in trackers}
    for _ in range(rounds):
        for name, tracker in trackers.items():
            seen[name].append(measure_fps(tracker, frames, init_box, warmup=warmup,
                                          threads=threads))
    return {name: {key: statistics.median(r[key] for r in runs)
                   for key in ("fps_wall", "fps_cpu")} for name, runs in seen.items()}


# --------------------------------------------------------------------------- trivial trackers
class StaticBoxTracker:
    """Reports the first frame's box in every frame (the floor of any benchmark)."""

    name = "static box"

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        self.box = np.asarray(box, dtype=np.float64).copy()

    def update(self, frame: np.ndarray) -> np.ndarray:
        return self.box.copy()


class TemplateMatchingTracker:
    """Normalised cross-correlation (all three channels) of a fixed-size template.

    ``update``: ``"first"`` keeps the first frame's template; ``"last"`` re-cuts it at every
    result (adapts to appearance change, but drifts). ``window_factor``: the search window is
    a square of side window_factor * sqrt(w h) around the previous box, clipped to the image
    (None: the whole frame). The box size never changes.
    """

    def __init__(self, update: str = "last", window_factor: float | None = 4.0) -> None:
        if update not in ("first", "last"):
            raise ParameterError(f"update must be 'first' or 'last', got {update!r}")
        self.update_rule = update
        self.window_factor = window_factor
        self.name = f"template matching ({update} frame)"

    def _cut(self, image: Tensor, box: np.ndarray) -> None:
        x, y = int(round(box[0])), int(round(box[1]))
        h, w = image.shape[1:]
        x = min(max(x, 0), w - self.size[0])
        y = min(max(y, 0), h - self.size[1])
        patch = image[:, y:y + self.size[1], x:x + self.size[0]]
        patch = patch - patch.mean()
        self.template = patch
        self.template_norm = float(patch.pow(2).sum().sqrt()) + 1e-6

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        image = frames_to_tensor(frame[None])[0]
        h, w = image.shape[1:]
        self.size = (int(min(max(round(box[2]), 3), w)), int(min(max(round(box[3]), 3), h)))
        self.box = np.asarray(box, dtype=np.float64).copy()
        self._cut(image, self.box)

    def update(self, frame: np.ndarray) -> np.ndarray:
        image = frames_to_tensor(frame[None])[0]
        h, w = image.shape[1:]
        tw, th = self.size
        if self.window_factor is None:
            x0, y0, x1, y1 = 0, 0, w, h
        else:
            side = self.window_factor * float(np.sqrt(self.box[2] * self.box[3]))
            cx, cy = self.box[0] + self.box[2] / 2, self.box[1] + self.box[3] / 2
            x0, y0 = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
            x1, y1 = int(min(cx + side / 2, w)), int(min(cy + side / 2, h))
            if x1 - x0 < tw:
                x0, x1 = max(min(x0, w - tw), 0), max(min(x0, w - tw), 0) + tw
            if y1 - y0 < th:
                y0, y1 = max(min(y0, h - th), 0), max(min(y0, h - th), 0) + th
        region = image[:, y0:y1, x0:x1][None]
        num = F.conv2d(region, self.template[None])[0, 0]
        ones = torch.ones(1, 3, th, tw)
        s1 = F.conv2d(region, ones)[0, 0]
        s2 = F.conv2d(region * region, ones)[0, 0]
        var = (s2 - s1 * s1 / (3 * th * tw)).clamp(min=1e-8)
        ncc = num / (var.sqrt() * self.template_norm)
        v, u = divmod(int(torch.argmax(ncc)), ncc.shape[1])
        self.box = np.array([x0 + u, y0 + v, tw, th], dtype=np.float64)
        if self.update_rule == "last":
            self._cut(image, self.box)
        return self.box.copy()


# --------------------------------------------------------------------------- network trackers
class CropTracker:
    """A one-stream tracker around a network ``predict(template, search) -> (N, 4)`` boxes
    (cx, cy, w, h) normalised to the search crop. The template is cut once, on the first
    frame (factor ``template_factor``); each search crop is cut around the previous box
    (factor ``search_factor``); the box is mapped back to the image and clipped."""

    def __init__(self, predict: Callable[[Tensor, Tensor], Tensor], *, name: str,
                 template_size: int = 32, search_size: int = 64,
                 template_factor: float = 2.0, search_factor: float = 4.0) -> None:
        self.predict = predict
        self.name = name
        self.template_size, self.search_size = template_size, search_size
        self.template_factor, self.search_factor = template_factor, search_factor

    def init_batch(self, frames: np.ndarray, boxes: np.ndarray) -> None:
        images = normalize(frames_to_tensor(frames))
        self.boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4).clone()
        centers = self.boxes[:, :2] + self.boxes[:, 2:] / 2
        self.template = crop(images, centers, crop_side(self.boxes, self.template_factor),
                             self.template_size)

    def search_crops(self, frames: np.ndarray) -> tuple[Tensor, Tensor, Tensor, tuple]:
        images = normalize(frames_to_tensor(frames))
        centers = self.boxes[:, :2] + self.boxes[:, 2:] / 2
        sides = crop_side(self.boxes, self.search_factor)
        return crop(images, centers, sides, self.search_size), centers, sides, images.shape[2:]

    def map_back(self, pred: Tensor, centers: Tensor, sides: Tensor, hw: tuple) -> np.ndarray:
        xywh = torch.cat([pred[:, :2] - pred[:, 2:] / 2, pred[:, 2:]], 1)
        self.boxes = clip_boxes(box_from_crop(xywh.float(), centers, sides), hw[0], hw[1])
        return self.boxes.double().numpy()

    @torch.inference_mode()
    def update_batch(self, frames: np.ndarray) -> np.ndarray:
        search, centers, sides, hw = self.search_crops(frames)
        return self.map_back(self.predict(self.template, search), centers, sides, hw)

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        self.init_batch(frame[None], np.asarray(box)[None])

    def update(self, frame: np.ndarray) -> np.ndarray:
        return self.update_batch(frame[None])[0]
