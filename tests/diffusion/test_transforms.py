import pytest
import torch

from repro.diffusion.transforms import (
    HELD_OUT_TRANSFORMS,
    INK_COLOURS,
    SEEN_TRANSFORMS,
    apply_transform,
    random_shapes,
    sample_edit_grids,
    tile_pool,
)
from repro.errors import ParameterError


def _ramp():
    return torch.tensor([[[[0.0, 0.1, 0.2, 0.3],
                           [0.4, 0.5, 0.6, 0.7],
                           [0.8, 0.9, 1.0, 0.0],
                           [0.1, 0.2, 0.3, 0.4]]]])


def test_hflip_and_vflip_reverse_columns_and_rows():
    x = _ramp()
    assert apply_transform("hflip", x)[0, 0, 0].tolist() == pytest.approx([0.3, 0.2, 0.1, 0.0])
    assert apply_transform("vflip", x)[0, 0, 0].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_shift_moves_right_by_a_quarter_tile_with_zero_fill():
    out = apply_transform("shift", _ramp())  # 4-pixel tile: one pixel
    assert out[0, 0, 1].tolist() == pytest.approx([0.0, 0.4, 0.5, 0.6])


def test_thicken_grows_a_single_pixel_into_a_3x3_block():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    out = apply_transform("thicken", x)
    assert out.sum() == 9 and out[0, 0, 1:4, 1:4].eq(1).all()


def test_recolour_turns_red_ink_green_and_invert_is_one_minus_x():
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    green = apply_transform("recolour", red)
    assert green[0, 1].eq(1).all() and green[0, 0].eq(0).all() and green[0, 2].eq(0).all()
    assert apply_transform("invert", red)[0, :, 0, 0].tolist() == [0.0, 1.0, 1.0]


def test_compositions_agree_with_the_equivalent_primitive():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(apply_transform("hflip+vflip", x), apply_transform("rot180", x))
    four = apply_transform("rot90+rot90+rot90+rot90", x)
    assert torch.equal(four, x)
    assert torch.allclose(apply_transform("invert+invert", x), x)


def test_held_out_edits_are_never_training_edits():
    assert not set(HELD_OUT_TRANSFORMS) & set(SEEN_TRANSFORMS)


def test_unknown_or_impossible_edits_are_refused_before_compute():
    with pytest.raises(ParameterError, match="unknown transformation 'hflip\\+blur'.*blur"):
        apply_transform("hflip+blur", torch.zeros(1, 3, 8, 8))
    with pytest.raises(ParameterError, match="not one string"):
        sample_edit_grids(2, None, None, "hflip", torch.Generator())
    with pytest.raises(ParameterError, match="needs 3-channel"):
        apply_transform("recolour", torch.zeros(1, 1, 8, 8))
    with pytest.raises(ParameterError, match="unknown tile source"):
        tile_pool("cifar", "train")


def test_shapes_are_binary_and_non_empty():
    shapes = random_shapes(50, 8, torch.Generator().manual_seed(0))
    assert shapes.shape == (50, 1, 8, 8)
    assert set(shapes.unique().tolist()) <= {0.0, 1.0}
    assert shapes.flatten(1).sum(1).min() >= 4


def test_digit_tiles_are_inked_in_one_palette_colour():
    pool = tile_pool("digits", "test", tile_size=8, channels=3)
    assert set(pool.labels.unique().tolist()) == set(range(10))
    assert 0.0 <= float(pool.images.min()) and float(pool.images.max()) <= 1.0
    # every tile is (grey intensity) x (one of the ink colours)
    peak = pool.images.flatten(2).amax(2)  # (N, 3)
    colour = (peak > 0).float()
    assert (colour[:, None, :] == INK_COLOURS[None]).all(-1).any(-1).all()


def test_grid_targets_are_the_named_edit_of_the_query():
    pool = tile_pool("mixed", "train", tile_size=8, channels=3, num_shapes=50)
    names = ("hflip", "invert", "shift+recolour")
    grids = sample_edit_grids(30, pool, pool, names, torch.Generator().manual_seed(1))
    for i in range(len(grids)):
        name = names[int(grids.transform[i])]
        assert torch.equal(grids.target[i:i + 1], apply_transform(name, grids.query[i:i + 1]))
        assert torch.equal(grids.exemplar_edited[i:i + 1],
                           apply_transform(name, grids.exemplar[i:i + 1]))
    again = sample_edit_grids(30, pool, pool, names, torch.Generator().manual_seed(1))
    assert torch.equal(grids.target, again.target)
