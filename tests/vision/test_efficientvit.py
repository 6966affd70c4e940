"""Tests for repro.vision.efficientvit against timm (a peer implementation), the official README
table, hand calculations and invariants of cascaded group attention."""

from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip("timm")

from repro.errors import CheckpointError, DataUnavailableError  # noqa: E402
from repro.vision import efficientvit as ev  # noqa: E402

PAPER_VARIANTS = [f"efficientvit_m{i}" for i in range(6)]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random BN statistics/affine parameters and attention biases (timm initialises BN to the
    identity and the biases to zero, which would hide mistakes in their handling)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                module.weight.uniform_(0.5, 1.5, generator=g)
                module.bias.normal_(0.0, 0.2, generator=g)
                module.running_mean.normal_(0.0, 0.2, generator=g)
                module.running_var.uniform_(0.5, 2.0, generator=g)
        for name, param in model.named_parameters():
            if "attention_biases" in name:
                param.normal_(0.0, 1.0, generator=g)
    return model


def random_timm(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomize_(timm.create_model(name, pretrained=False), seed).eval()


def images(batch: int = 2, size: int = 224, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# Parity with timm and the paper's table
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAPER_VARIANTS)
def test_outputs_match_timm_with_timm_weights(name):
    reference = random_timm(name, seed=PAPER_VARIANTS.index(name))
    ours = ev.load_timm_state_dict(ev.create_model(name), reference.state_dict()).eval()
    x = images()
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert expected.abs().max() > 0.5  # the random weights give non-trivial logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", PAPER_VARIANTS)
def test_parameter_count_matches_timm_and_readme_table(name):
    ours = ev.create_model(name)
    reference = timm.create_model(name, pretrained=False)
    assert ev.count_params(ours) == sum(p.numel() for p in reference.parameters())
    # The README's column matches the BN-folded model to its one decimal for all six variants
    # (the training-time count is up to 0.07 M larger: M5 has 12.47 M, printed 12.4).
    folded_m = ev.count_params(ev.fold_batchnorm(ours)) / 1e6
    assert abs(folded_m - ev.PAPER_TABLE[name].params_m) < 0.05
    assert abs(ev.count_params(ours) / 1e6 - ev.PAPER_TABLE[name].params_m) < 0.08


@pytest.mark.parametrize("name", PAPER_VARIANTS)
def test_flops_match_readme_table_as_multiply_accumulates(name):
    macs = ev.count_flops(ev.create_model(name), img_size=224)
    # README "FLOPs" = multiply-accumulates (fvcore convention); all six agree to < 0.5 %.
    assert macs / 1e6 == pytest.approx(ev.PAPER_TABLE[name].flops_m, rel=0.005)


def test_flops_are_half_of_torch_flop_counter_total():
    from torch.utils.flop_counter import FlopCounterMode

    model = ev.create_model("efficientvit_tiny").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(images(1, 32))
    assert ev.count_flops(model, img_size=32) * 2 == counter.get_total_flops()


def test_first_patch_embedding_conv_counts_hand_computed_macs():
    # conv 3 -> 8 channels, 3x3, stride 2 on 32x32: 16*16 outputs * 8 * 3 * 9 MACs
    embed = ev.OverlapPatchEmbed(3, 8, num_layers=1)
    assert ev.count_flops(embed, img_size=32) == 16 * 16 * 8 * 3 * 9


# ---------------------------------------------------------------------------------------------
# Cascaded group attention vs. multi-head self-attention
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dim", "heads"), [(64, 4), (144, 3), (224, 2), (384, 4)])
def test_cga_has_heads_times_fewer_qkv_parameters_than_mhsa(dim, heads):
    key_dim = 16
    value_dim = dim // heads
    kernels = (5, 5, 5, 5)
    cga = ev.CascadedGroupAttention(dim, key_dim, heads, window_size=7, kernels=kernels)
    mhsa = ev.MultiHeadSelfAttention(dim, key_dim, heads, window_size=7, kernels=kernels)
    # by hand: each head projects its C/h split (CGA) or all C channels (MHSA) to 2*16 + C/h
    cga_weights = heads * (dim // heads) * (2 * key_dim + value_dim)
    mhsa_weights = dim * heads * (2 * key_dim + value_dim)
    bn_affine = 2 * heads * (2 * key_dim + value_dim)  # same in both
    assert ev.count_params(cga.qkv_projections) == cga_weights + bn_affine
    assert ev.count_params(mhsa.qkv) == mhsa_weights + bn_affine
    assert mhsa_weights == heads * cga_weights
    # everything else (query convs, biases, projection) is shared at equal width
    assert (ev.count_params(mhsa) - ev.count_params(mhsa.qkv)
            == ev.count_params(cga) - ev.count_params(cga.qkv_projections))


def _head_maps(mixer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with ev.capture_attention(mixer) as maps, torch.no_grad():
        mixer(x)
    return maps[""]  # the module itself is the only attention layer


def _perturb(x: torch.Tensor, channels: slice) -> torch.Tensor:
    y = x.clone()
    y[:, channels] += torch.randn(y[:, channels].shape, generator=torch.Generator().manual_seed(1))
    return y


def test_cascade_makes_head_two_depend_on_head_one_split_but_not_the_reverse():
    dim, heads = 8, 2
    cga = randomize_(ev.CascadedGroupAttention(dim, 4, heads, window_size=3, kernels=(3, 3)),
                     seed=0).eval()
    x = images(2, 3, channels=dim)
    base = _head_maps(cga, x)
    first_split_changed = _head_maps(cga, _perturb(x, slice(0, 4)))
    second_split_changed = _head_maps(cga, _perturb(x, slice(4, 8)))
    # head 2's input is X_2 + (head 1's output), so head 1's split reaches head 2 ...
    assert not torch.allclose(first_split_changed[:, 1], base[:, 1], atol=1e-4)
    # ... while head 1 only ever sees its own split (group attention)
    torch.testing.assert_close(second_split_changed[:, 0], base[:, 0], atol=0, rtol=0)
    assert not torch.allclose(second_split_changed[:, 1], base[:, 1], atol=1e-4)


def test_mhsa_heads_all_depend_on_every_channel_split():
    dim, heads = 8, 2
    mhsa = randomize_(ev.MultiHeadSelfAttention(dim, 4, heads, window_size=3, kernels=(3, 3)),
                      seed=0).eval()
    x = images(2, 3, channels=dim)
    base = _head_maps(mhsa, x)
    for split in (slice(0, 4), slice(4, 8)):
        changed = _head_maps(mhsa, _perturb(x, split))
        for head in range(heads):
            assert not torch.allclose(changed[:, head], base[:, head], atol=1e-4)


# ---------------------------------------------------------------------------------------------
# BN folding, weights through timm, factory errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["cascaded", "mhsa"])
def test_fold_batchnorm_preserves_eval_outputs_and_removes_every_batchnorm(attention):
    model = randomize_(ev.create_model("efficientvit_m0", attention=attention), seed=3).eval()
    folded = ev.fold_batchnorm(model)
    x = images()
    with torch.no_grad():
        expected, got = model(x), folded(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # input untouched


def test_fold_batchnorm_also_folds_timm_models():
    reference = random_timm("efficientvit_m0", seed=4)
    folded = ev.fold_batchnorm(reference)
    x = images(1)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), reference(x), rtol=1e-5, atol=2e-5)


def test_pretrained_path_loads_a_saved_timm_checkpoint_offline(tmp_path):
    from safetensors.torch import save_file

    reference = random_timm("efficientvit_m0", seed=5)
    path = tmp_path / "efficientvit_m0.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    ours = ev.create_model("efficientvit_m0", pretrained=True, checkpoint_file=path).eval()
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)


def test_pretrained_missing_checkpoint_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match="nope.safetensors.*does not exist"):
        ev.create_model("efficientvit_m0", pretrained=True, checkpoint_file=missing)


def test_pretrained_corrupt_checkpoint_file_is_a_clear_error(tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(CheckpointError,
                       match="could not read checkpoint_file .*corrupt.safetensors.*truncated"):
        ev.create_model("efficientvit_m0", pretrained=True, checkpoint_file=corrupt)


def test_pretrained_offline_without_file_names_the_download_and_the_fix(tmp_path, monkeypatch):
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # fail fast instead of retrying
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(DataUnavailableError) as info:
        ev.create_model("efficientvit_m0", pretrained=True)
    message = str(info.value)
    assert "efficientvit_m0" in message and "offline" in message
    assert "timm/efficientvit_m0.r224_in1k" in message and "checkpoint_file=PATH" in message


def test_load_timm_state_dict_rejects_weights_of_another_variant():
    with pytest.raises(CheckpointError, match="does not fit"):
        ev.load_timm_state_dict(ev.create_model("efficientvit_m0"),
                                timm.create_model("efficientvit_m1").state_dict())


def test_unknown_variant_is_a_value_error_listing_valid_names():
    with pytest.raises(ValueError, match="efficientvit_m7.*efficientvit_m0.*efficientvit_m5"):
        ev.create_model("efficientvit_m7")


def test_unknown_override_is_a_value_error():
    with pytest.raises(ValueError, match="embed_dim"):
        ev.create_model("efficientvit_m0", embed_dim=(1, 2, 3))


def test_factories_build_the_table_configurations():
    model = ev.efficientvit_m5(num_classes=0)
    assert model.config.embed_dims == (192, 288, 384)
    assert model.config.depths == (1, 3, 4) and model.config.num_heads == (3, 3, 4)
    assert isinstance(model.head, torch.nn.Identity)


def test_config_rejects_widths_not_divisible_by_heads():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        ev.EfficientViTConfig(embed_dims=(30, 48, 64), num_heads=(4, 4, 4))


# ---------------------------------------------------------------------------------------------
# Attention maps and head redundancy
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["cascaded", "mhsa"])
def test_capture_attention_returns_row_stochastic_maps_per_window(attention):
    model = randomize_(ev.create_model("efficientvit_m0", attention=attention), seed=6).eval()
    batch = 2
    with ev.capture_attention(model) as maps, torch.no_grad():
        model(images(batch))
    # stage 1: 14x14 tokens in four 7x7 windows; stage 2: one 7x7 window; stage 3: one 4x4
    expected = {"stages.0.blocks.0.mixer.attention": (batch * 4, 4, 49, 49)}
    expected |= {f"stages.1.blocks.{j}.mixer.attention": (batch, 4, 49, 49) for j in range(2)}
    expected |= {f"stages.2.blocks.{j}.mixer.attention": (batch, 4, 16, 16) for j in range(3)}
    assert {name: tuple(m.shape) for name, m in maps.items()} == expected
    for m in maps.values():
        torch.testing.assert_close(m.sum(-1), torch.ones(m.shape[:-1]))
        assert (m >= 0).all()
    with torch.no_grad():
        model(images(1))
    assert maps["stages.2.blocks.0.mixer.attention"].shape[0] == batch  # no capture after exit


def test_head_redundancy_is_one_for_identical_heads():
    maps = torch.softmax(torch.randn(3, 1, 5, 5, generator=torch.Generator().manual_seed(0)), -1)
    assert ev.head_redundancy(maps.expand(3, 4, 5, 5)) == pytest.approx(1.0)


def test_head_redundancy_matches_hand_computed_cosines():
    head_a = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    head_b = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    # flattened: (1, 0, .5, .5) . (0, 1, .5, .5) = 0.5, both norms^2 = 1.5 -> cosine 1/3
    layer1 = torch.stack([head_a, head_b])[None]
    assert ev.head_redundancy(layer1, "mean") == pytest.approx(1 / 3)
    assert ev.head_redundancy(layer1, "max") == pytest.approx(1 / 3)  # two heads: the same
    # averaged over layers: (1/3 + 1) / 2
    layer2 = torch.stack([head_a, head_a])[None]
    assert ev.head_redundancy({"a": layer1, "b": layer2}, "mean") == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------------
# Toy configuration used by the notebooks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["cascaded", "mhsa"])
def test_tiny_grayscale_model_trains_on_32px_images(attention):
    torch.manual_seed(0)
    model = ev.create_model("efficientvit_tiny", in_chans=1, num_classes=10, attention=attention)
    x = images(4, 32, channels=1)
    assert model.forward_features(x).shape == (4, 64, 2, 2)  # 32 -> 8x8 tokens -> 4x4 -> 2x2
    logits = model(x)
    assert logits.shape == (4, 10)
    torch.nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    with ev.capture_attention(model) as maps, torch.no_grad():
        model.eval()(x)
    assert maps["stages.0.blocks.0.mixer.attention"].shape == (4 * 4, 2, 16, 16)
    assert maps["stages.2.blocks.0.mixer.attention"].shape == (4, 2, 4, 4)


def test_mhsa_model_has_more_parameters_than_cga_at_equal_width():
    cga = ev.create_model("efficientvit_tiny")
    mhsa = ev.create_model("efficientvit_tiny", attention="mhsa")
    # per attention layer: (h - 1) * C * (2 * key_dim + C / h) more weights, h = 2
    extra = sum(dim * (2 * 16 + dim // 2) for dim in (32, 48, 64))
    assert ev.count_params(mhsa) - ev.count_params(cga) == extra
    assert ev.count_flops(mhsa, img_size=32) > ev.count_flops(cga, img_size=32)


# ---------------------------------------------------------------------------------------------
# Sizes that are not multiples of 16, train mode, padded windows (issue 14, part 3)
# ---------------------------------------------------------------------------------------------


def _window_sizes(model: torch.nn.Module) -> list[int]:
    return [b.mixer.window_size for stage in model.stages for b in stage.blocks]


def _timm_window_sizes(model: torch.nn.Module) -> list[int]:
    return [b.mixer.m.attn.resolution for stage in model.stages for b in stage.blocks]


@pytest.mark.parametrize(("size", "windows"), [(192, [7, 6, 6, 3, 3, 3]),
                                               (200, [7, 6, 6, 3, 3, 3]),
                                               (256, [7, 7, 7, 4, 4, 4])])
def test_window_sizes_follow_img_size_over_16_like_timm(size, windows):
    # by hand: 200 // 16 = 12 -> min(7, 12) = 7; (12 - 1) // 2 + 1 = 6; (6 - 1) // 2 + 1 = 3
    ours = ev.create_model("efficientvit_m0", img_size=size)
    assert _window_sizes(ours) == windows
    assert _timm_window_sizes(timm.create_model("efficientvit_m0", img_size=size)) == windows


@pytest.mark.parametrize("size", [192, 200])
def test_outputs_match_timm_at_sizes_that_pad_their_windows(size):
    # at 200 px the stage-1 map is 13 x 13 in 7 x 7 windows and the stage-2 map 7 x 7 in
    # 6 x 6 windows: both are zero-padded, partitioned and cropped
    reference = randomize_(timm.create_model("efficientvit_m1", img_size=size), seed=7).eval()
    ours = ev.load_timm_state_dict(ev.create_model("efficientvit_m1", img_size=size),
                                   reference.state_dict()).eval()
    x = images(2, size)
    assert ours.patch_embed(x).shape[-1] == (13 if size == 200 else 12)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [192, 200, 256])
def test_pretrained_path_at_other_sizes_matches_timms_pretrained_path(tmp_path, size):
    from safetensors.torch import save_file

    trained = random_timm("efficientvit_m0", seed=8)  # a 224-px checkpoint, like the release
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path))
    reference = timm.create_model("efficientvit_m0", pretrained=True, img_size=size,
                                  pretrained_cfg_overlay=dict(file=str(path))).eval()
    ours = ev.create_model("efficientvit_m0", pretrained=True, checkpoint_file=path,
                           img_size=size).eval()
    x = images(1, size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)


def test_train_mode_outputs_and_gradients_match_timm():
    reference = randomize_(timm.create_model("efficientvit_m0", img_size=200), seed=9).train()
    ours = ev.load_timm_state_dict(ev.create_model("efficientvit_m0", img_size=200),
                                   reference.state_dict()).train()
    x = images(3, 200)
    target = torch.tensor([1, 5, 999])
    losses = []
    for model in (reference, ours):
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=1e-5)
    ours_params = dict(ours.named_parameters())
    names = ev.convert_timm_state_dict({n: p for n, p in reference.named_parameters()})
    assert len(names) == len(ours_params)
    checked = 0
    for (timm_name, timm_param), our_name in zip(reference.named_parameters(), names,
                                                 strict=True):
        grad = ours_params[our_name].grad
        assert grad is not None, our_name
        torch.testing.assert_close(grad, timm_param.grad, atol=1e-5, rtol=1e-4,
                                   msg=f"{our_name} vs {timm_name}")
        checked += int(timm_param.grad.abs().max() > 0)
    assert checked > len(names) // 2  # most gradients are non-zero: the test sees them


# ---------------------------------------------------------------------------------------------
# Pretrained-load errors that say what is wrong
# ---------------------------------------------------------------------------------------------


def _saved_timm(tmp_path, name: str, mutate=None):
    from safetensors.torch import save_file

    state = {k: v.contiguous().clone() for k, v in
             timm.create_model(name, pretrained=False).state_dict().items()}
    if mutate:
        mutate(state)
    path = tmp_path / f"{name}.safetensors"
    save_file(state, str(path))
    return path


def test_weights_of_another_variant_are_named_in_the_error(tmp_path):
    path = _saved_timm(tmp_path, "efficientvit_m1")
    with pytest.raises(CheckpointError, match="weights of M1 given to M0"):
        ev.create_model("efficientvit_m0", pretrained=True, checkpoint_file=path)
    with pytest.raises(CheckpointError, match="weights of M1 given to M0"):
        ev.load_timm_state_dict(ev.create_model("efficientvit_m0"),
                                timm.create_model("efficientvit_m1").state_dict())


def test_a_directory_as_checkpoint_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory, not a file"):
        ev.create_model("efficientvit_m0", pretrained=True, checkpoint_file=tmp_path)


def test_nan_weights_are_refused_naming_the_tensor(tmp_path):
    def poison(state):
        state["stages.1.blocks.0.ffn0.m.pw1.conv.weight"][0, 0] = float("nan")

    path = _saved_timm(tmp_path, "efficientvit_m0", poison)
    with pytest.raises(CheckpointError, match=r"stages\.1\.blocks\.0\.ffn0.*NaN or inf"):
        ev.create_model("efficientvit_m0", pretrained=True, checkpoint_file=path)


def test_a_checkpoint_of_no_variant_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(CheckpointError, match=r"fit none of the variants\); expected M0"):
        ev.create_model("efficientvit_m0", pretrained=True, checkpoint_file=path)


def test_identify_variant_names_each_of_m0_to_m5():
    for name in PAPER_VARIANTS:
        state = timm.create_model(name, pretrained=False, num_classes=10).state_dict()
        assert ev.identify_variant(state) == name


def test_img_size_below_the_stem_stride_is_refused():
    with pytest.raises(ValueError, match="smaller than the stem's stride 16"):
        ev.create_model("efficientvit_m0", img_size=8)


# ---------------------------------------------------------------------------------------------
# Folding the baselines' BatchNorm; the paper's redundancy measure
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mobilenetv3_large_100", "mobilevit_xxs"])
def test_fold_batchnorm_with_an_example_folds_timm_baselines(name):
    torch.manual_seed(0)
    model = randomize_(timm.create_model(name, pretrained=False), seed=10).eval()
    x = images(2)
    folded = ev.fold_batchnorm(model, x[:1])
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # untouched
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(folded(x), expected, rtol=1e-4,
                                   atol=1e-5 * expected.abs().max().item())


def test_head_redundancy_max_takes_each_heads_closest_other_head():
    head_a = torch.eye(3)  # each query attends to itself
    head_b = head_a.clone()  # identical to a: cosine 1
    head_c = torch.full((3, 3), 1 / 3)  # uniform
    # by hand: a . c = 3 * 1/3 = 1, |a| = sqrt(3), |c| = sqrt(9 / 9) = 1 -> cosine 1/sqrt(3)
    cos_ac = 1 / 3**0.5
    maps = torch.stack([head_a, head_b, head_c])[None]
    # max: a -> b (1), b -> a (1), c -> a or b (1/sqrt3); mean over the 3 pairs
    assert ev.head_redundancy(maps, "max") == pytest.approx((1 + 1 + cos_ac) / 3)
    assert ev.head_redundancy(maps, "mean") == pytest.approx((1 + 2 * cos_ac) / 3)
    with pytest.raises(ValueError, match="reduction"):
        ev.head_redundancy(maps, "median")
