import json

import pytest
import torch
from torch import nn

from repro.diffusion.imagebrush import (
    ImageBrush,
    ImageBrushConfig,
    VisualPromptEncoder,
    build_scheduler,
    diffusion_loss,
    fourier_features,
    hole_mask,
    inpaint_with_pipeline,
    load_inpainting_pipeline,
    make_grid,
    sample,
    split_grid,
    to_image_range,
    trained_imagebrush,
    training_batch,
    training_data,
)
from repro.diffusion.metrics import evaluation_grids
from repro.errors import DataUnavailableError, ParameterError

TINY = dict(tile_size=8, block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=8,
            context_dim=16, prompt_heads=2, prompt_layers=1)


def _tiles(n=2, c=3, size=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, c, size, size, generator=g) for _ in range(4)]


def test_grid_places_exemplar_pair_on_top_and_query_bottom_left():
    e, e2, q, t = _tiles()
    grid = make_grid(e, e2, q, t)
    assert grid.shape == (2, 3, 8, 8)
    assert torch.equal(grid[..., :4, :4], e) and torch.equal(grid[..., :4, 4:], e2)
    assert torch.equal(grid[..., 4:, :4], q) and torch.equal(grid[..., 4:, 4:], t)
    for part, original in zip(split_grid(grid), (e, e2, q, t)):
        assert torch.equal(part, original)
    assert make_grid(e, e2, q)[..., 4:, 4:].eq(0).all()  # the blank M


def test_hole_mask_covers_exactly_the_bottom_right_quadrant():
    mask = hole_mask(4, batch=3)
    assert mask.shape == (3, 1, 8, 8) and mask.sum() == 3 * 16
    assert mask[..., 4:, 4:].eq(1).all()


def test_grid_errors_name_the_shapes():
    e, e2, q, _ = _tiles()
    with pytest.raises(ParameterError, match="one shape"):
        make_grid(e, e2, q[..., :3])
    with pytest.raises(ParameterError, match="even height"):
        split_grid(torch.zeros(1, 3, 7, 8))


@pytest.mark.parametrize("kwargs, message", [
    (dict(block_out_channels=(16, 30)), "must divide every entry"),
    (dict(block_out_channels=(16,)), "at least two levels"),
    (dict(tokens_per_side=3), "tokens_per_side"),
    (dict(condition_dropout=1.0), "condition_dropout"),
])
def test_bad_configs_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        ImageBrushConfig(**kwargs)


def test_fourier_features_by_hand():
    # one frequency (pi): sin/cos of 0 and pi for the box [0, 0, 1, 1]
    got = fourier_features(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), num_frequencies=1)
    assert got.tolist()[0] == pytest.approx([0, 1, 0, 1, 0, -1, 0, -1], abs=1e-6)
    assert fourier_features(torch.rand(5, 4), 8).shape == (5, 64)


def test_prompt_encoder_gives_one_token_set_per_grid():
    config = ImageBrushConfig(**TINY, use_boxes=True)
    encoder = VisualPromptEncoder(config)
    e, e2, q, _ = _tiles(size=8)
    out = encoder(e, e2, q)
    assert out.shape == (2, config.num_context_tokens, 16) and config.num_context_tokens == 13


def _model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return ImageBrush(ImageBrushConfig(**TINY, **kwargs)).eval()


def test_unet_sees_clean_context_noisy_hole_and_mask():
    model = _model()
    e, e2, q, noisy = _tiles(size=8)
    drop = torch.tensor([False, True])
    x = model.unet_input(e, e2, q, noisy, drop)
    assert x.shape == (2, 4, 16, 16)
    assert torch.equal(x[0, :3, :8, :8], e[0]) and torch.equal(x[0, :3, 8:, :8], q[0])
    assert torch.equal(x[0, :3, 8:, 8:], noisy[0])
    assert x[1, :3, :8].eq(0).all()  # a dropped instruction hides the exemplar pair
    assert torch.equal(x[:, 3:], hole_mask(8, 2))


def test_dropping_the_instruction_makes_the_output_independent_of_the_exemplar():
    model = _model()
    e, e2, q, noisy = _tiles(n=1, size=8)
    t = torch.tensor([500])
    other = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        kept = [model(x, e2, q, noisy, t, torch.tensor([False])) for x in (e, other)]
        dropped = [model(x, e2, q, noisy, t, torch.tensor([True])) for x in (e, other)]
    assert not torch.allclose(kept[0], kept[1])
    assert torch.equal(dropped[0], dropped[1])


def test_training_batches_are_a_pure_function_of_the_step_and_drop_at_the_paper_rate():
    config = ImageBrushConfig(**TINY)
    data = training_data(config, ("hflip", "invert"), "digits")
    scheduler = build_scheduler(config)
    a = training_batch(data, config, scheduler, 3, 16, seed=0)
    b = training_batch(data, config, scheduler, 3, 16, seed=0)
    c = training_batch(data, config, scheduler, 4, 16, seed=0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["noise"], c["noise"])
    big = training_batch(data, config, scheduler, 0, 4000, seed=0)
    assert 0.04 < float(big["drop"].float().mean()) < 0.06  # Sec. 3.1: 5 %
    assert float(diffusion_loss(_model(), a)) > 0


class _ConstantEps(nn.Module):
    """A stand-in denoiser: eps = 0.3 with the instruction, -0.5 without."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, exemplar, exemplar_edited, query, noisy, timesteps, drop):
        return torch.where(drop[:, None, None, None], torch.full_like(noisy, -0.5),
                           torch.full_like(noisy, 0.3))


@pytest.mark.parametrize("w", [1.0, 3.0, 7.5])
def test_guided_sampling_follows_the_classifier_free_guidance_formula(w):
    from diffusers import DDIMScheduler

    config = ImageBrushConfig(**TINY)
    grids = evaluation_grids(("hflip",), 3)
    out = sample(_ConstantEps(config), grids, steps=2, guidance_scale=w, seed=5, progress=False)
    reference = DDIMScheduler.from_config(build_scheduler(config).config)
    reference.set_timesteps(2)
    x = torch.randn(grids.query.shape, generator=torch.Generator().manual_seed(5))
    eps = -0.5 + w * (0.3 - (-0.5))  # eps(empty) + w (eps(c) - eps(empty))
    for t in reference.timesteps:
        x = reference.step(torch.full_like(x, eps), t, x).prev_sample
    assert torch.allclose(out, to_image_range(x), atol=1e-6)


def test_sampling_is_deterministic_and_in_image_range():
    grids = evaluation_grids(("hflip", "invert"), 4)
    model = _model()
    a = sample(model, grids, steps=3, guidance_scale=2.0, seed=1, progress=False)
    b = sample(model, grids, steps=3, guidance_scale=2.0, seed=1, progress=False)
    assert a.shape == grids.target.shape and torch.equal(a, b)
    assert 0 <= float(a.min()) and float(a.max()) <= 1


def test_cached_training_is_reused_and_gives_the_same_model(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE", str(tmp_path))
    config = ImageBrushConfig(**TINY)
    first = trained_imagebrush(config, ("hflip",), steps=3, batch_size=4, warmup_steps=1,
                               progress=False)
    files = list(tmp_path.glob("imagebrush-*.safetensors"))
    assert len(files) == 1 and len(first.loss) == 3
    second = trained_imagebrush(config, ("hflip",), steps=3, batch_size=4, warmup_steps=1,
                                progress=False)
    for (k, v), w in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(v, w), k
    assert second.loss == pytest.approx(first.loss)


# ------------------------------------------------------------------ full scale, offline
def _tiny_inpainting_folder(path, cross_attention_dim=16):
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=9, out_channels=4, block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=4, attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                        block_out_channels=(8, 8), norm_num_groups=4,
                        down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2)
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet,
                                          scheduler=DDIMScheduler(), safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path)
    return path


def test_full_scale_pipeline_runs_offline_on_a_random_tiny_checkpoint(tmp_path):
    folder = _tiny_inpainting_folder(tmp_path / "sd")
    pipe = load_inpainting_pipeline(folder)
    pipe.set_progress_bar_config(disable=True)
    config = ImageBrushConfig(**TINY)
    model = _model()
    e, e2, q, _ = _tiles(n=2, size=16)
    with torch.no_grad():
        context = model.prompt_encoder(e * 2 - 1, e2 * 2 - 1, q * 2 - 1)
    assert context.shape[-1] == config.context_dim
    out = inpaint_with_pipeline(pipe, context, model.null_context.detach(), e, e2, q, steps=2,
                                guidance_scale=7.5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 16, 16)
    assert 0 <= float(out.min()) and float(out.max()) <= 1


def test_missing_weights_name_the_manifest(tmp_path, monkeypatch):
    with pytest.raises(DataUnavailableError, match="sd-inpainting.yaml"):
        load_inpainting_pipeline(tmp_path / "nowhere")
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))
    with pytest.raises(DataUnavailableError, match="sd-inpainting"):
        load_inpainting_pipeline()  # through repro.data.fetch and the manifest
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.json"))


def test_a_corrupt_pipeline_folder_is_named(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "Nope", "unet": 1}))
    with pytest.raises(DataUnavailableError, match="broken"):
        load_inpainting_pipeline(folder)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_the_regression_target_follows_the_prediction_type(prediction):
    config = ImageBrushConfig(**TINY, prediction_type=prediction)
    data = training_data(config, ("invert",), "digits")
    scheduler = build_scheduler(config)
    batch = training_batch(data, config, scheduler, 0, 8, seed=0)
    alpha_bar = scheduler.alphas_cumprod[batch["timesteps"]].view(-1, 1, 1, 1)
    # x_t = sqrt(a) x0 + sqrt(1 - a) eps, so x0 follows from x_t and eps
    clean = (batch["noisy_target"] - (1 - alpha_bar).sqrt() * batch["noise"]) / alpha_bar.sqrt()
    expected = {"epsilon": batch["noise"], "sample": clean,
                "v_prediction": alpha_bar.sqrt() * batch["noise"] - (1 - alpha_bar).sqrt() * clean}
    assert torch.allclose(batch["target"], expected[prediction], atol=1e-4)
    with pytest.raises(ParameterError, match="prediction_type"):
        ImageBrushConfig(prediction_type="x0")
