import pytest
import torch

from repro.diffusion.metrics import (
    DigitClassifier,
    copy_baseline,
    edit_identification_accuracy,
    evaluate_edits,
    evaluation_grids,
    quadrant_mse,
    ssim,
)
from repro.diffusion.transforms import apply_transform, tile_pool
from repro.errors import ParameterError


def test_quadrant_mse_of_black_against_mid_grey_is_a_quarter():
    assert quadrant_mse(torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.5)).tolist() == \
        pytest.approx([0.25, 0.25])


def test_ssim_of_an_image_with_itself_is_one():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)


def test_ssim_of_two_flat_images_is_the_luminance_term_by_hand():
    # no variance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1), C1 = (0.01)^2
    a, b, c1 = 0.2, 0.6, 1e-4
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # = 0.2401 / 0.4001
    got = ssim(torch.full((1, 1, 9, 9), a), torch.full((1, 1, 9, 9), b))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(0.60010, abs=1e-5)


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, 12, 10, generator=g)
    y = (x + 0.2 * torch.randn(4, 3, 12, 10, generator=g)).clamp(0, 1)
    ours = ssim(x, y)
    for i in range(4):
        ref = metrics.structural_similarity(x[i].numpy(), y[i].numpy(), channel_axis=0,
                                            data_range=1.0)
        assert float(ours[i]) == pytest.approx(ref, abs=1e-5)


def test_ssim_refuses_images_smaller_than_the_window():
    with pytest.raises(ParameterError, match="win_size"):
        ssim(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ParameterError, match="one shape"):
        quadrant_mse(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


def test_edit_identification_is_perfect_for_the_true_edit_and_not_for_a_copy():
    grids = evaluation_grids(("hflip", "invert", "recolour"), 60)
    assert edit_identification_accuracy(grids.target, grids.query, grids.transform,
                                        grids.names) == 1.0
    copied = copy_baseline(grids.query)
    assert torch.equal(copied, grids.query) and copied is not grids.query
    # a copy is nearest to hflip (the smallest change) for most queries: about 1/3 right
    acc = edit_identification_accuracy(copied, grids.query, grids.transform, grids.names)
    assert acc < 0.6


def test_digit_classifier_recognises_edited_test_digits():
    train = tile_pool("digits", "train", tile_size=8, channels=3)
    test = tile_pool("digits", "test", tile_size=8, channels=3)
    classifier = DigitClassifier.fit(train, ("hflip", "invert"))
    assert classifier.accuracy(test.images, test.labels) > 0.85
    assert classifier.accuracy(apply_transform("invert", test.images), test.labels) > 0.85
    # shuffling the pixels destroys the digit: near chance
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    scrambled = test.images.flatten(2)[..., perm].reshape(test.images.shape)
    assert classifier.accuracy(scrambled, test.labels) < 0.4


def test_evaluate_edits_scores_the_truth_perfectly():
    grids = evaluation_grids(("vflip", "shift"), 40)
    row = evaluate_edits(grids.target, grids)
    assert row["MSE"] == 0 and row["SSIM"] == pytest.approx(1.0) and row["edit-ID acc"] == 1.0
