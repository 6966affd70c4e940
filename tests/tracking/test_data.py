"""The sequence generator, the benchmark file formats (round trips and corrupt files) and the
crop/box transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repro.errors import DataUnavailableError, ParameterError
from repro.tracking import data

SMALL = data.GeneratorConfig(num_frames=30, occlusion=1.0, out_of_view=1.0,
                             similar_distractor=1.0, appearance_change=1.0)


@pytest.fixture()
def bank():
    return data.make_bank(4, SMALL, seed=3)


def test_generator_is_a_pure_function_of_its_seed(bank):
    again = data.make_bank(4, SMALL, seed=3)
    other = data.make_bank(4, SMALL, seed=4)
    assert torch.equal(bank.boxes, again.boxes) and torch.equal(bank.background,
                                                                again.background)
    assert not torch.equal(bank.boxes, other.boxes)
    frames = data.render(bank, torch.tensor([0, 1]), torch.tensor([0, 5]),
                         torch.Generator().manual_seed(0))
    assert frames.shape == (2, 3, 96, 96) and 0 <= frames.min() and frames.max() <= 1


def test_events_set_the_flags_and_attributes(bank):
    assert bank.attributes.all(0)[list(data.ATTRIBUTES).index("out_of_view")]
    assert bank.out_of_view.any(1).all() and bank.active[:, -1].any(1).all()  # occluder
    assert bank.full_occlusion.any()  # (an occlusion can fall while the target is away)
    assert not (bank.full_occlusion & bank.out_of_view).any()
    assert bank.visible[:, 0].all()  # events start after frame 5
    gt = bank.ground_truth()
    assert (gt[~bank.visible] == 0).all()  # LaSOT writes 0,0,0,0 for invisible frames
    vis = gt[bank.visible]
    assert (vis[:, 0] >= 0).all() and (vis[:, 0] + vis[:, 2] <= 96 + 1e-4).all()


def test_target_pixels_change_colour_under_appearance_change(bank):
    color = bank.color[:, bank.target_index]
    assert (color[:, 0] - color[:, -1]).abs().max(-1).values.min() > 0.3


def test_bad_generator_parameters_are_refused():
    with pytest.raises(ParameterError, match="digit_split"):
        data.GeneratorConfig(digit_split="val")
    with pytest.raises(ParameterError, match="num_frames"):
        data.GeneratorConfig(num_frames=5)


def test_lasot_round_trip(tmp_path, bank):
    frames = data.render_sequences(bank).numpy()
    gt = bank.ground_truth().numpy()
    data.write_lasot(tmp_path, frames[:2], gt[:2], bank.full_occlusion.numpy()[:2],
                     bank.out_of_view.numpy()[:2], attributes=bank.attributes.numpy()[:2])
    seqs = data.read_lasot(tmp_path)
    assert [s.name for s in seqs] == ["digit-1", "digit-2"]
    assert (tmp_path / "digit" / "digit-1" / "img" / "00000001.jpg").is_file()
    np.testing.assert_allclose(seqs[0].boxes, gt[0], atol=0.006)  # written with 2 decimals
    np.testing.assert_array_equal(seqs[1].visible, bank.visible[1].numpy())
    assert seqs[0].attributes["similar_distractor"]
    loaded = seqs[0].load_frames()
    assert loaded.shape == (30, 96, 96, 3)
    assert np.abs(loaded.astype(int) - frames[0].astype(int)).mean() < 4  # JPEG of noise
    assert not list(tmp_path.glob("digit/.*"))  # no temporary folders left


def test_lasot_reader_names_the_corrupt_file(tmp_path, bank):
    frames = data.render_sequences(bank).numpy()[:1]
    data.write_lasot(tmp_path, frames, bank.ground_truth().numpy()[:1],
                     bank.full_occlusion.numpy()[:1], bank.out_of_view.numpy()[:1])
    folder = tmp_path / "digit" / "digit-1"
    lines = (folder / "groundtruth.txt").read_text().splitlines()
    lines[3] = "12,abc,4,5"
    (folder / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(data.AnnotationError, match=r"groundtruth.txt, line 4"):
        data.read_lasot_sequence(folder)
    lines[3] = "1,2,3"
    (folder / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(data.AnnotationError, match="expected four numbers"):
        data.read_lasot_sequence(folder)
    lines[3] = "1,2,3,4"
    (folder / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    (folder / "out_of_view.txt").write_text("0,1,0\n")
    with pytest.raises(data.AnnotationError, match=r"out_of_view.txt: expected 30 flags"):
        data.read_lasot_sequence(folder)
    (folder / "out_of_view.txt").unlink()
    with pytest.raises(data.AnnotationError, match="out_of_view.txt: missing"):
        data.read_lasot_sequence(folder)


def test_got10k_round_trip_and_corrupt_label(tmp_path, bank):
    frames = data.render_sequences(bank).numpy()[:2]
    gt = bank.ground_truth().numpy()[:2]
    paths = data.write_got10k(tmp_path, frames, gt, bank.visible.numpy()[:2])
    assert (tmp_path / "val" / "list.txt").read_text().split() == [p.name for p in paths]
    seq = data.read_got10k_sequence(paths[0])
    assert seq.name == "GOT-10k_Val_000001" and len(seq) == 30
    np.testing.assert_array_equal(seq.visible, bank.visible[0].numpy())
    assert set(np.unique(seq.cover)) <= {0, 8}
    (paths[1] / "cover.label").write_text("8\n" * 29 + "9\n")
    with pytest.raises(data.AnnotationError, match=r"cover.label: expected 30 values in 0..8"):
        data.read_got10k_sequence(paths[1])


def test_got10k_test_split_has_only_the_first_box(tmp_path, bank):
    frames = data.render_sequences(bank).numpy()[:1]
    paths = data.write_got10k(tmp_path, frames, bank.ground_truth().numpy()[:1, :1],
                              bank.visible.numpy()[:1], split="test")
    seq = data.read_got10k_sequence(paths[0])
    assert seq.boxes.shape == (1, 4) and len(seq) == 30 and seq.visible is None


def test_trackingnet_round_trip_sorts_frames_numerically(tmp_path, bank):
    frames = data.render_sequences(bank).numpy()[:1]
    data.write_trackingnet(tmp_path, frames, bank.ground_truth().numpy()[:1], names=["abc"])
    seq = data.read_trackingnet_sequence(tmp_path, "abc")
    assert [p.name for p in seq.frames[:12]][-3:] == ["9.jpg", "10.jpg", "11.jpg"]
    assert seq.boxes.shape == (30, 4)
    (tmp_path / "TEST" / "anno" / "abc.txt").write_text("1,2,3,4\n1,2,3,4\n")
    with pytest.raises(data.AnnotationError, match="2 boxes for 30 frames"):
        data.read_trackingnet_sequence(tmp_path, "abc")


def test_missing_real_data_names_the_manifest(tmp_path):
    with pytest.raises(DataUnavailableError, match=r"data/manifests/lasot.yaml"):
        data.require_dataset("lasot", tmp_path / "nowhere")


def test_box_to_crop_and_back_is_the_identity():
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(50, 4, generator=g) * torch.tensor([80.0, 80.0, 30.0, 30.0]) + 1
    centers = torch.rand(50, 2, generator=g) * 96
    sides = torch.rand(50, generator=g) * 60 + 10
    rel = data.box_to_crop(boxes, centers, sides)
    torch.testing.assert_close(data.box_from_crop(rel, centers, sides), boxes)
    # hand-worked: a crop of side 40 centred at (50, 50) starts at (30, 30)
    rel = data.box_to_crop(torch.tensor([[40.0, 30.0, 10.0, 20.0]]), torch.tensor([[50.0, 50.0]]),
                           torch.tensor([40.0]))
    torch.testing.assert_close(rel, torch.tensor([[0.25, 0.0, 0.25, 0.5]]))


def test_crop_puts_the_box_where_box_to_crop_says():
    image = torch.zeros(1, 3, 96, 96)
    image[:, :, 40:50, 20:30] = 1.0  # a white 10x10 square at x 20..30, y 40..50
    centers, sides = torch.tensor([[30.0, 50.0]]), torch.tensor([40.0])
    patch = data.crop(image, centers, sides, 40)  # 1 px per px
    rel = data.box_to_crop(torch.tensor([[20.0, 40.0, 10.0, 10.0]]), centers, sides)[0] * 40
    x, y = int(rel[0]), int(rel[1])
    assert patch[0, 0, y:y + 10, x:x + 10].min() > 0.99
    assert patch[0, 0].sum() == pytest.approx(100, abs=1e-3)
    outside = data.crop(image, torch.tensor([[-100.0, -100.0]]), sides, 8)
    assert outside.abs().max() == 0  # zero padding outside the image


def test_training_pairs_contain_the_target_box(bank):
    g = torch.Generator().manual_seed(0)
    pairs = data.sample_pairs(bank, 16, g)
    assert pairs.template.shape == (16, 3, 32, 32) and pairs.search.shape == (16, 3, 64, 64)
    t = pairs.target
    assert ((t >= 0) & (t <= 1)).all() and (t[:, 2:] > t[:, :2]).all()
    # from pre-rendered frames: the same shapes, and the target still inside the crop
    frames = data.render_sequences(bank)
    again = data.sample_pairs(bank, 16, torch.Generator().manual_seed(0), frames=frames)
    assert again.search.shape == pairs.search.shape
    assert (again.target[:, 2:] > again.target[:, :2]).all()
