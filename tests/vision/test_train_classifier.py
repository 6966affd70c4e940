"""`repro train efficientvit` on a tiny fake ImageFolder: it trains, checkpoints, resumes to the
numbers of an uninterrupted run, refuses bad input with exit status 2 before any compute (and
leaves a corrupt checkpoint as it was), and uses the paper's recipe by default."""

from __future__ import annotations

import argparse
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from repro.cli import main as repro_main
from repro.train import History
from repro.vision import train_classifier as tc

CLASSES = ("n01440764", "n01443537")  # two ImageNet wnids


def write_image_folder(root: Path, per_class: dict[str, int], size: int = 32) -> Path:
    """root/<split>/<wnid>/<i>.png of seeded noise, a class-dependent colour cast added."""
    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for c, wnid in enumerate(CLASSES):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 128, (size, size, 3)) + 120 * np.eye(3)[c]
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("imagenet"), {"train": 8, "val": 4})


def tiny_args(data: Path, output: Path, *extra: str) -> list[str]:
    return ["train", "efficientvit", "--model", "efficientvit_tiny", "--data", str(data),
            "--img-size", "32", "--batch-size", "8", "--device", "cpu", "--workers", "0",
            "--output", str(output), "--lr", "0.01", "--warmup-epochs", "1",
            "--no-repeated-aug", *extra]  # 16 images: RASampler would cut an epoch to 0


def history_of(checkpoint: Path) -> History:
    import json

    from safetensors import safe_open

    with safe_open(str(checkpoint), framework="pt") as f:
        return History(**json.loads(f.metadata()["history"]))


@pytest.mark.slow
def test_training_checkpoints_each_epoch_and_resume_matches_an_uninterrupted_run(data, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert repro_main(tiny_args(data, straight, "--epochs", "2")) == 0
    # the same run, stopped after the first epoch (2 steps of 16 images / 8) and resumed
    assert repro_main(tiny_args(data, split, "--epochs", "2", "--max-steps", "2")) == 0
    first = load_file(split / "last.safetensors")
    assert history_of(split / "last.safetensors").step == [2]
    assert repro_main(tiny_args(data, split, "--epochs", "2", "--resume")) == 0

    hist = history_of(split / "last.safetensors")
    assert hist.step == [2, 4] and hist.metrics["epoch"] == [0.0, 1.0]
    assert all(e["images"] == 8 for e in hist.evals)  # every val image once
    assert {"top1", "top5", "ema_top1", "ema_top5"} <= set(hist.evals[-1])
    assert len((split / "metrics.jsonl").read_text().splitlines()) == 2
    a, b = load_file(straight / "last.safetensors"), load_file(split / "last.safetensors")
    assert a.keys() == b.keys()
    assert any(k.startswith("model.ema.") for k in a) and any(k.startswith("optim.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    moved = [k for k in first if k.startswith("model.model.") and k.endswith("weight")
             and not torch.equal(first[k], b[k])]
    assert moved, "the resumed epoch did not train"

    from repro.vision.efficientvit import create_model

    model = create_model("efficientvit_tiny", img_size=32, num_classes=2)
    tc.load_weights(model, split / "last.safetensors")  # the EMA weights, for evaluation
    for key, value in model.state_dict().items():
        assert torch.equal(value, b[f"model.ema.{key}"]), key


def test_missing_data_exits_2_naming_the_imagenet_manifest(tmp_path, capsys):
    code = repro_main(tiny_args(tmp_path / "nowhere", tmp_path / "out", "--max-steps", "1"))
    err = capsys.readouterr().err
    assert code == 2
    assert "imagenet-1k" in err and "imagenet-1k.yaml" in err
    assert "does not exist" in err and "image-net.org" in err  # the manual steps
    assert not (tmp_path / "out").exists()


def test_data_folder_without_val_names_what_is_missing(tmp_path, capsys):
    write_image_folder(tmp_path / "d", {"train": 2})
    assert repro_main(tiny_args(tmp_path / "d", tmp_path / "out")) == 2
    assert "has no val/" in capsys.readouterr().err


def test_unknown_model_exits_2_and_lists_the_variants(data, tmp_path, capsys):
    args = tiny_args(data, tmp_path / "out")
    args[args.index("efficientvit_tiny")] = "efficientvit_m9"
    assert repro_main(args) == 2
    err = capsys.readouterr().err
    assert "unknown model 'efficientvit_m9'" in err
    assert "efficientvit_m0" in err and "efficientvit_m5" in err and "efficientvit_tiny" in err


def test_truncated_checkpoint_on_resume_is_refused_and_left_untouched(data, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    ckpt = out / "last.safetensors"
    save_file({"model.model.w": torch.arange(4096.0)}, str(ckpt))
    ckpt.write_bytes(ckpt.read_bytes()[:-5000])
    before = ckpt.read_bytes()
    assert repro_main(tiny_args(data, out, "--resume")) == 2
    assert "corrupt or truncated" in capsys.readouterr().err
    assert ckpt.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["last.safetensors"]


def test_existing_checkpoint_needs_resume_and_resume_needs_a_checkpoint(data, tmp_path, capsys):
    out = tmp_path / "out"
    assert repro_main(tiny_args(data, out, "--resume")) == 2
    assert "--resume: no checkpoint at" in capsys.readouterr().err
    out.mkdir()
    (out / "last.safetensors").write_bytes(b"x")
    assert repro_main(tiny_args(data, out)) == 2
    assert "pass --resume to continue it" in capsys.readouterr().err


@pytest.mark.parametrize("extra, needle", [
    (["--num-classes", "1000"], "--num-classes 1000 but"),
    (["--batch-size", "3"], "must be even for Mixup"),
    (["--batch-size", "64"], "not one full batch of 64"),
])
def test_inconsistent_options_exit_2_before_training(data, tmp_path, capsys, extra, needle):
    assert repro_main(tiny_args(data, tmp_path / "out", *extra)) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_python_dash_m_entry_point_has_the_same_errors(tmp_path, capsys):
    assert tc.cli(["--data", str(tmp_path / "nowhere"), "--device", "cpu"]) == 2
    assert "imagenet-1k" in capsys.readouterr().err


def test_defaults_are_the_papers_recipe(tmp_path):
    parser = argparse.ArgumentParser()
    tc.add_arguments(parser)
    args = parser.parse_args(["--data", str(tmp_path)])
    # spec §4.3 / Cream main.py: 300 epochs, 8 x 256, AdamW lr 1e-3 x 2048/512, wd 0.025, ...
    assert (args.epochs, args.batch_size, args.weight_decay) == (300, 256, 0.025)
    assert (args.warmup_epochs, args.warmup_lr, args.min_lr) == (5, 1e-6, 1e-5)
    assert (args.smoothing, args.mixup, args.cutmix, args.reprob) == (0.1, 0.8, 1.0, 0.25)
    assert (args.randaugment, args.color_jitter) == ("rand-m9-mstd0.5-inc1", 0.4)
    assert (args.clip_grad, args.ema_decay, args.amp) == (0.02, 0.99996, False)
    assert args.repeated_aug is True and args.attention == "cascaded"  # main.py's defaults
    assert tc.scaled_lr(256, 8) == pytest.approx(4e-3)  # the paper's 2048 images per step
    assert args.func is tc.main


def test_weight_decay_skips_norms_biases_and_attention_biases():
    from repro.vision.efficientvit import create_model

    model = create_model("efficientvit_tiny", num_classes=2)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = tc.param_groups(model, 0.025)
    decayed = [names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    skipped = [names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]]
    assert sorted(decayed + skipped) == sorted(names.values())
    assert any(n.endswith("attention_biases") for n in skipped)
    assert all(model.get_parameter(n).ndim >= 2 and not n.endswith("attention_biases")
               for n in decayed)
    assert all(model.get_parameter(n).ndim <= 1 or n.endswith("attention_biases")
               for n in skipped)


def test_randaugment_zero_bit_posterize_gives_the_black_image_of_older_pillow(data, tmp_path):
    from timm.data.auto_augment import RandAugment

    parser = argparse.ArgumentParser()
    tc.add_arguments(parser)
    args = tc.resolve_args(parser.parse_args(
        ["--data", str(data), "--model", "efficientvit_tiny", "--batch-size", "8",
         "--output", str(tmp_path), "--no-repeated-aug"]))
    train, _ = tc.build_datasets(args)
    (randaugment,) = [t for t in train.transform.transforms if isinstance(t, RandAugment)]
    (op,) = [op for op in randaugment.ops if op.name == "PosterizeIncreasing"]
    img = Image.open(train.samples[0][0]).convert("RGB")
    pixels = np.asarray(img)
    op.prob, op.magnitude_std = 1.0, 0.0
    op.magnitude = 10  # the clipped m9 + noise draw: keep 4 - int(10 / 10 * 4) = 0 bits
    assert np.asarray(op(img)).max() == 0  # Pillow < 13: mask ~255, every channel zero
    op.magnitude = 5  # keep 4 - int(5 / 10 * 4) = 2 bits
    assert np.array_equal(np.asarray(op(img)), pixels & 0b1100_0000)


# ----------------------------------------------------------------------------- torchrun-like
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, argv: list[str], port: int, folder: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    code = repro_main(argv)
    Path(folder, f"rc{rank}").write_text(str(code))


@pytest.mark.distributed
@pytest.mark.slow
def test_two_process_run_like_torchrun_trains_with_ddp(data, tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "out"
    argv = tiny_args(data, out, "--batch-size", "4", "--epochs", "1")
    mp.spawn(_rank_main, args=(argv, _free_port(), str(tmp_path)), nprocs=2, join=True)
    assert [(tmp_path / f"rc{r}").read_text() for r in range(2)] == ["0", "0"]
    hist = history_of(out / "last.safetensors")
    assert hist.step == [2]  # 16 images / (2 ranks x 4)
    assert hist.evals[0]["images"] == 8  # the val shards cover every image once
    assert (out / "config.json").exists()


def _parsed(data: Path, output: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    tc.add_arguments(parser)
    return tc.resolve_args(parser.parse_args(
        ["--data", str(data), "--model", "efficientvit_tiny", "--img-size", "32",
         "--output", str(output), *extra]))


def test_repeated_augmentation_is_on_by_default_and_says_when_data_is_too_small(data, tmp_path):
    # RASampler: floor(16 // 256 * 256 / 1) = 0 images per epoch
    assert tc.samples_per_rank(16, 1, repeated_aug=True) == 0
    assert tc.samples_per_rank(1000, 2, repeated_aug=True) == 384  # 768 / 2
    assert tc.samples_per_rank(1000, 2, repeated_aug=False) == 500
    args = _parsed(data, tmp_path, "--batch-size", "8")
    with pytest.raises(tc.ReproError, match="--no-repeated-aug for a small data set"):
        tc.build_datasets(args)


def test_repeated_augmentation_uses_timms_repeat_aug_sampler(data, tmp_path):
    from timm.data.distributed_sampler import RepeatAugSampler

    from repro.distributed import DistInfo

    args = _parsed(data, tmp_path, "--batch-size", "8", "--workers", "0")
    train, val = tc.build_datasets(tc.argparse.Namespace(**{**vars(args),
                                                           "repeated_aug": False}))
    _, _, sampler = tc.build_loaders(train, val, args, DistInfo())
    assert isinstance(sampler, RepeatAugSampler)


def test_lr_at_each_epoch_boundary_follows_the_official_loop(data, tmp_path):
    from repro.distributed import DistInfo

    args = _parsed(data, tmp_path, "--batch-size", "8", "--lr", "4e-3", "--mixup", "0",
                   "--cutmix", "0")
    _, _, optimizer, scheduler = tc.build_training(args, DistInfo())
    base, start, floor, warmup, epochs = 4e-3, 1e-6, 1e-5, 5, 300

    def schedule(t: int) -> float:  # timm's CosineLRScheduler at epoch value t, by hand
        if t < warmup:
            return start + t * (base - start) / warmup
        return floor + 0.5 * (base - floor) * (1 + math.cos(math.pi * t / epochs))

    # main.py steps the scheduler after each epoch: epoch e >= 1 runs at schedule(e - 1)
    expected = {0: 1e-6, 1: 1e-6, 2: 8.008e-4, 3: schedule(2), 6: schedule(5),
                299: schedule(298)}
    assert expected[2] == pytest.approx(schedule(1))
    for epoch, lr in expected.items():
        assert tc.epoch_lr(scheduler, epoch) == pytest.approx(lr, rel=1e-9), epoch
        assert optimizer.param_groups[0]["lr"] == pytest.approx(lr, rel=1e-9)


def test_attention_option_trains_the_mhsa_variant(data, tmp_path):
    from repro.distributed import DistInfo
    from repro.vision.efficientvit import MultiHeadSelfAttention

    args = _parsed(data, tmp_path, "--attention", "mhsa")
    model, *_ = tc.build_training(args, DistInfo())
    assert model.config.attention == "mhsa"
    assert any(isinstance(m, MultiHeadSelfAttention) for m in model.modules())


def test_train_loop_uses_repro_progress_not_raw_tqdm():
    import inspect

    source = inspect.getsource(tc)
    assert "from tqdm" not in source and "import tqdm" not in source
    assert "from repro.progress import progress" in source
