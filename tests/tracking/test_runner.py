"""The tracker protocol and runner: trivial trackers on hand-made frames, batched and
per-sequence runs agree, FPS keys and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repro.errors import ParameterError
from repro.tracking import data, runner


def moving_square(n: int = 6, step: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A textured 10x10 patch moving right by ``step`` px per frame on a noisy background."""
    rng = np.random.default_rng(0)
    patch = rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)
    frames = rng.integers(100, 140, (n, 64, 64, 3), dtype=np.uint8)
    boxes = np.zeros((n, 4))
    for k in range(n):
        x = 10 + step * k
        frames[k, 20:30, x:x + 10] = patch
        boxes[k] = [x, 20, 10, 10]
    return frames, boxes


@pytest.mark.parametrize("update", ["first", "last"])
def test_template_matching_follows_a_moving_patch(update):
    frames, boxes = moving_square()
    got, seconds = runner.run_sequence(runner.TemplateMatchingTracker(update), frames, boxes[0])
    np.testing.assert_allclose(got, boxes)
    assert seconds.shape == (6,) and (seconds >= 0).all()


def test_static_box_never_moves():
    frames, boxes = moving_square()
    got, _ = runner.run_sequence(runner.StaticBoxTracker(), frames, boxes[0])
    assert (got == boxes[0]).all()


def test_batched_run_equals_per_sequence_run():
    bank = data.make_bank(3, data.GeneratorConfig(num_frames=30), seed=0)
    frames = data.render_sequences(bank).numpy()
    seqs = [data.TrackingSequence(f"s{i}", frames[i], bank.ground_truth()[i].numpy())
            for i in range(3)]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 8, 8), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 64, 4), torch.nn.Sigmoid()).eval()
    tracker = runner.CropTracker(lambda z, x: net(x) * 0.5 + 0.25, name="net")
    batched = runner.run_benchmark(tracker, seqs, batched=True)
    single = runner.run_benchmark(tracker, seqs, batched=False)
    for s in seqs:
        np.testing.assert_allclose(batched.boxes[s.name], single.boxes[s.name], atol=1e-2)  # px
        assert (batched.boxes[s.name][:, 2:] >= 4).all()  # clipped to a 4-px minimum side
    with pytest.raises(ParameterError, match="batched=True"):
        runner.run_benchmark(runner.StaticBoxTracker(), seqs, batched=True)


def test_clip_keeps_the_centre_inside_and_sides_in_range():
    boxes = torch.tensor([[-50.0, 10.0, 2.0, 300.0]])
    out = runner.clip_boxes(boxes, 96, 96)
    cx, cy = out[0, 0] + out[0, 2] / 2, out[0, 1] + out[0, 3] / 2
    assert 0 <= cx <= 96 and 0 <= cy <= 96 and out[0, 2] == 4 and out[0, 3] == 96


def test_fps_reports_wall_and_cpu_and_refuses_one_frame():
    frames, boxes = moving_square()
    fps = runner.measure_fps(runner.StaticBoxTracker(), frames, boxes[0], warmup=2)
    assert fps["frames"] == 5 and fps["fps_wall"] > 0 and fps["fps_cpu"] > 0
    both = runner.compare_fps({"a": runner.StaticBoxTracker(), "b": runner.StaticBoxTracker()},
                              frames, boxes[0], rounds=2, warmup=1)
    assert set(both) == {"a", "b"} and set(both["a"]) == {"fps_wall", "fps_cpu"}
    with pytest.raises(ParameterError, match="at least two frames"):
        runner.measure_fps(runner.StaticBoxTracker(), frames[:1], boxes[0])
    with pytest.raises(ParameterError, match="update must be"):
        runner.TemplateMatchingTracker("middle")
