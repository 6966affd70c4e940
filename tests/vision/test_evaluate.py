"""repro.vision.evaluate: the released-weights ImageNet evaluation on a fixture in ImageNet's
class-folder layout (the ci stand-in for the real validation set), the official evaluation
transform against a hand-written PIL pipeline, labels by WordNet id, the errors a user meets
at full scale, and the head-redundancy evaluation of a trained checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm")

from repro.errors import CheckpointError, DataUnavailableError, ReproError  # noqa: E402
from repro.vision import efficientvit as ev  # noqa: E402
from repro.vision import evaluate as evl  # noqa: E402

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    return evl.write_imagenet_fixture(tmp_path_factory.mktemp("imagenet"), per_class=2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return evl.save_random_checkpoint("efficientvit_m0",
                                      tmp_path_factory.mktemp("ckpt") / "model.safetensors")


def hand_eval_transform(path) -> torch.Tensor:
    """Official eval transform by hand: short side to int(224 / 0.875) = 256 (bicubic), centre
    crop 224, /255, ImageNet mean/std."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    w, h = img.size
    scale = 256 / min(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    w, h = img.size
    left, top = int(round((w - 224) / 2)), int(round((h - 224) / 2))
    img = img.crop((left, top, left + 224, top + 224))
    pixels = (np.asarray(img, dtype=np.float64) / 255 - MEAN) / STD
    return torch.from_numpy(pixels).permute(2, 0, 1).float()


def test_eval_transform_is_resize_256_bicubic_centre_crop_224_normalised(fixture_dir):
    path = next((fixture_dir / "val").rglob("*.JPEG"))
    from PIL import Image

    got = evl.eval_transform("efficientvit_m0")(Image.open(path).convert("RGB"))
    assert got.shape == (3, 224, 224)
    torch.testing.assert_close(got, hand_eval_transform(path), atol=2e-2, rtol=0)
    assert (got - hand_eval_transform(path)).abs().mean() < 2e-3


def test_labels_are_the_wnid_index_in_the_1000_classes(fixture_dir):
    data = evl.ImageNetValidation(fixture_dir)
    # n01440764 is class 0, n01443537 class 1 and n15075141 (toilet tissue) the last, 999
    assert [label for _, label in data.samples] == [0, 0, 1, 1, 999, 999]
    assert len(evl.imagenet_wnids()) == 1000


def test_released_evaluation_runs_the_same_on_our_model_and_timms(fixture_dir, checkpoint):
    ours = evl.evaluate_released("efficientvit_m0", checkpoint, fixture_dir, complete=False,
                                 batch_size=4)
    theirs = evl.evaluate_released("efficientvit_m0", checkpoint, fixture_dir, impl="timm",
                                   complete=False, batch_size=4)
    assert ours.images == theirs.images == 6
    assert (ours.top1, ours.top5) == (theirs.top1, theirs.top5)
    # independent reference: timm's model on the hand-transformed images
    reference = timm.create_model("efficientvit_m0", pretrained=True,
                                  pretrained_cfg_overlay=dict(file=str(checkpoint))).eval()
    data = evl.ImageNetValidation(fixture_dir)
    x = torch.stack([hand_eval_transform(p) for p, _ in data.samples])
    target = torch.tensor([label for _, label in data.samples])
    with torch.no_grad():
        top5 = reference(x).topk(5, dim=1).indices
    assert ours.top1 == pytest.approx(100 * float((top5[:, 0] == target).float().mean()))
    assert ours.top5 == pytest.approx(100 * float((top5 == target[:, None]).any(1).float().mean()))
    assert ours.paper_top1 == 63.2 and ours.gap == pytest.approx(abs(ours.top1 - 63.2))


def test_top_k_accuracy_counts_by_hand():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05], [0.2, 0.3, 0.5]])
    target = torch.tensor([1, 2, 0])
    # sample 0: top-1 hit; sample 1: label 2 is third; sample 2: label 0 is third
    assert evl.top_k_accuracy(logits, target, ks=(1, 2, 3)) == {1: 1, 2: 1, 3: 3}


def test_missing_validation_folder_names_the_imagenet_manifest(tmp_path):
    with pytest.raises(DataUnavailableError) as info:
        evl.ImageNetValidation(tmp_path / "nowhere")
    message = str(info.value)
    assert "does not exist" in message and "imagenet-1k.yaml" in message
    assert "image-net.org" in message  # the manual steps of the manifest


def test_full_scale_refuses_a_partial_validation_set(fixture_dir):
    with pytest.raises(DataUnavailableError, match=r"3 class folders and 6 images.*50,000"):
        evl.ImageNetValidation(fixture_dir, complete=True)


def test_a_folder_that_is_not_a_wnid_is_refused(tmp_path):
    (tmp_path / "val" / "cats").mkdir(parents=True)
    with pytest.raises(ReproError, match=r"not ImageNet-1k WordNet ids: \['cats'\]"):
        evl.ImageNetValidation(tmp_path)


def test_a_corrupt_image_names_the_file(tmp_path):
    folder = tmp_path / "val" / "n01440764"
    folder.mkdir(parents=True)
    (folder / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"not a jpeg")
    data = evl.ImageNetValidation(tmp_path)
    with pytest.raises(ReproError, match="ILSVRC2012_val_00000001.JPEG is corrupt"):
        data[0]


def test_missing_released_weights_name_the_checkpoint_manifest(tmp_path):
    with pytest.raises(DataUnavailableError) as info:
        evl.released_checkpoint_path("efficientvit_m3", tmp_path)
    message = str(info.value)
    assert "efficientvit-m3-in1k.yaml" in message
    assert "timm/efficientvit_m3.r224_in1k" in message
    assert str(tmp_path / "efficientvit-m3-in1k" / "model.safetensors") in message


def test_released_weights_are_found_where_the_manifest_says(tmp_path, checkpoint):
    target = tmp_path / "efficientvit-m0-in1k" / "model.safetensors"
    target.parent.mkdir()
    target.write_bytes(checkpoint.read_bytes())
    assert evl.released_checkpoint_path("efficientvit_m0", tmp_path) == target


def test_wrong_variant_checkpoint_is_refused_before_any_image_is_read(fixture_dir, checkpoint):
    for impl in ("ours", "timm"):
        with pytest.raises(CheckpointError, match="weights of M0 given to M2"):
            evl.evaluate_released("efficientvit_m2", checkpoint, fixture_dir, impl=impl,
                                  complete=False)


# ----------------------------------------------------------------------------- redundancy
def _trained_run(tmp_path, attention: str):
    """What `repro train efficientvit` leaves: last.safetensors (a repro checkpoint with
    model.ema.* keys) and config.json."""
    from repro.train import save_checkpoint

    torch.manual_seed(0)
    model = ev.create_model("efficientvit_tiny", img_size=32, num_classes=3, attention=attention)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "attention_biases" in name or p.ndim == 1:
                p.normal_(0, 0.5)
    run = tmp_path / attention
    run.mkdir()
    holder = torch.nn.Module()
    holder.ema = model  # the trainer's state module: keys model.ema.*
    save_checkpoint(run / "last.safetensors", holder,
                    torch.optim.SGD(model.parameters(), lr=0.1), step=1)
    (run / "config.json").write_text(json.dumps({"model": "efficientvit_tiny", "img_size": 32,
                                                 "num_classes": 3, "attention": attention}))
    return run, model.eval()


@pytest.mark.parametrize("attention", ["cascaded", "mhsa"])
def test_trained_checkpoint_reloads_with_its_attention_and_redundancy_matches(tmp_path,
                                                                               attention):
    run, model = _trained_run(tmp_path, attention)
    loaded = evl.load_trained(run)
    assert loaded.config.attention == attention
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    result = evl.attention_redundancy(loaded, [(x[:2], None), (x[2:], None)])
    # the reference: all four images at once through capture_attention + head_redundancy
    with ev.capture_attention(model) as maps, torch.no_grad():
        model(x)
    for layer, layer_maps in maps.items():
        name = layer.split(".mixer")[0]
        for reduction in ("max", "mean"):
            assert result[name][reduction] == pytest.approx(
                ev.head_redundancy(layer_maps, reduction), rel=1e-6)
    layers = [k for k in result if k != "all"]
    assert result["all"]["max"] == pytest.approx(np.mean([result[k]["max"] for k in layers]))


def test_missing_trained_run_says_how_to_train_it(tmp_path):
    with pytest.raises(DataUnavailableError, match=r"--attention \{cascaded,mhsa\}"):
        evl.load_trained(tmp_path / "run")
