"""A-CLIP: attentive token selection, EMA, losses and the FLOP saving."""

import math

import pytest
import torch

from repro.clip.aclip import (
    ACLIP,
    ACLIPConfig,
    attentive_keep_indices,
    byol_loss,
    cls_attention,
    ema_momentum,
    ema_update,
    encode_image_kept,
    encoder_flops,
    keep_count,
    random_keep_indices,
    shift_images,
    simclr_loss,
)
from repro.clip.models import TinyCLIPConfig, create_model
from repro.errors import ParameterError

CFG = TinyCLIPConfig(embed_dim=16, image_size=16, patch_size=2, vision_width=32,
                     vision_layers=2, vision_head_width=8, text_width=32, text_layers=1,
                     text_heads=4, context_length=6, vocab_size=20)  # an 8 x 8 patch grid


def test_keep_count_follows_the_codes_rule():
    assert keep_count(49, 0.5) == 25  # 7 x 7 blocks of ViT-B/16 at 224 px
    assert keep_count(16, 0.5) == 9
    assert keep_count(16, 1.0) == 16
    with pytest.raises(ParameterError):
        keep_count(16, 0.0)


def test_kept_indices_are_the_argmax_set():
    grid = 4  # 2 x 2 blocks of 2 x 2 patches; keep ratio 0.25 -> floor(4 * .25) + 1 = 2 blocks
    scores = torch.zeros(1, grid * grid)
    scores[0, [10, 11, 14, 15]] = 1.0  # bottom-right block: mean 1
    scores[0, [0]] = 2.0  # top-left block: mean 0.5
    scores[0, [2, 3]] = 0.1  # top-right block: mean 0.05
    kept = attentive_keep_indices(scores, grid, keep_ratio=0.25, block=2)
    assert kept.tolist() == [[0, 1, 4, 5, 10, 11, 14, 15]]


def test_random_keep_has_the_same_count_unique_and_seeded():
    a = random_keep_indices(5, 8, 0.5, 2, generator=torch.Generator().manual_seed(0))
    b = random_keep_indices(5, 8, 0.5, 2, generator=torch.Generator().manual_seed(0))
    assert a.shape == (5, 9 * 4) and torch.equal(a, b)
    assert all(len(set(row)) == 36 for row in a.tolist())


def test_ema_update_arithmetic():
    online, ema = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    with torch.no_grad():
        online.weight.fill_(3.0), ema.weight.fill_(1.0)
    ema_update(ema, online, 0.75)
    assert float(ema.weight.detach()) == pytest.approx(0.75 * 1 + 0.25 * 3)
    assert ema_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert ema_momentum(50, 100, 0.996) == pytest.approx(0.998)
    assert ema_momentum(100, 100, 0.996) == pytest.approx(1.0)


def test_cls_attention_matches_torchs_attention_weights():
    model = create_model(CFG, seed=0).eval()
    images = torch.randn(2, 3, 16, 16)
    visual = model.visual
    x = visual._embeds(images)
    maps = []
    for block in visual.transformer.resblocks:
        h = block.ln_1(x)
        _, weights = block.attn(h, h, h, need_weights=True, average_attn_weights=True)
        maps.append(weights[:, 0, 1:])
        x = block(x)
    assert torch.allclose(cls_attention(visual, images), sum(maps) / len(maps), atol=1e-6)


def test_encoding_all_tokens_equals_open_clips_forward():
    model = create_model(CFG, seed=0).eval()
    images = torch.randn(3, 3, 16, 16)
    ours, _ = encode_image_kept(model.visual, images, torch.arange(64).expand(3, -1))
    assert torch.allclose(ours, model.encode_image(images), atol=1e-5)


def test_flops_scale_with_the_keep_ratio():
    visual = create_model(CFG, seed=0).visual.eval()
    images = torch.randn(4, 3, 16, 16)
    full = encoder_flops(visual, images)
    ratios = {}
    for keep in (0.25, 0.5, 0.75):
        idx = random_keep_indices(4, 8, keep, 2, generator=torch.Generator().manual_seed(0))
        ratios[keep] = encoder_flops(visual, images, idx) / full
    # tokens kept (with [CLS]): 5, 9, 13 of 16 blocks -> 21/65, 37/65, 53/65; attention is
    # quadratic in tokens and the patch embedding always sees every patch, so the FLOP ratio
    # sits near the token ratio
    for keep, blocks in ((0.25, 5), (0.5, 9), (0.75, 13)):
        token_ratio = (4 * blocks + 1) / 65
        assert token_ratio - 0.08 < ratios[keep] < token_ratio + 0.05
    assert ratios[0.25] < ratios[0.5] < ratios[0.75] < 1


def test_simclr_and_byol_losses_against_hand_values():
    q = torch.eye(3)
    # identical orthogonal views: logits 10 on the positive, 0 on 2 negatives, -1e9 on self
    expected = -math.log(math.exp(10) / (math.exp(10) + 4))
    assert float(simclr_loss(q, q.clone(), 0.1)) == pytest.approx(expected, rel=1e-3)  # float32
    assert float(byol_loss(q, q)) == pytest.approx(0.0, abs=1e-6)
    assert float(byol_loss(q, -q)) == pytest.approx(4.0)


def test_shift_moves_content_by_whole_patches():
    images = torch.zeros(1, 1, 4, 4)
    images[0, 0, 0, 0] = 1.0
    out = shift_images(images, torch.tensor([[1, 0]]), patch=2, fill=-1.0)
    assert out[0, 0, 2, 0] == 1.0 and (out[0, 0, :2] == -1.0).all()


@pytest.mark.parametrize("masking,views,ssl", [("none", 1, 0.0), ("random", 2, 0.0),
                                               ("attentive", 2, 1.0)])
def test_aclip_loss_is_finite_and_trains_only_the_online_model(masking, views, ssl):
    model = ACLIP(create_model(CFG, seed=0), ACLIPConfig(
        masking=masking, views=views, simclr_weight=ssl, byol_weight=2 * ssl, head_width=16,
        head_dim=8, total_steps=10))
    masks = torch.zeros(4, 16, 16, dtype=torch.bool)
    masks[:, 2:4, 2:4] = True
    batch = {"images": torch.randn(4, 3, 16, 16), "texts": torch.randint(1, 20, (4, 6)),
             "caption_ids": torch.arange(4), "object_masks": masks}
    loss, metrics = model.loss(batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in model.ema_visual.parameters())
    if masking != "none":
        assert 0 <= metrics["object patches kept"] <= 1
    if ssl:
        assert {"simclr", "byol"} <= set(metrics)


def test_aclip_checkpoint_key_map_reproduces_the_timm_image_tower():
    from timm.models.vision_transformer import VisionTransformer

    from repro.clip.aclip import aclip_open_clip_model, convert_aclip_state_dict

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2,
                            num_classes=0).eval()
    config = {"embed_dim": 8,
              "vision_cfg": {"image_size": 16, "patch_size": 4, "width": 32, "layers": 2,
                             "head_width": 16, "no_ln_pre": True, "norm_kwargs": {"eps": 1e-6}},
              "text_cfg": {"context_length": 6, "vocab_size": 20, "width": 16, "heads": 2,
                           "layers": 1}}
    model = aclip_open_clip_model(config, name="repro-test-aclip")
    projection = torch.randn(32, 8)
    official = {f"module.visual.{k}": v for k, v in vit.state_dict().items()}
    official.update({f"module.{k}": v for k, v in model.state_dict().items()
                     if not k.startswith("visual.")})
    official["module.image_projection"] = projection
    official["module.visual_ema.cls_token"] = torch.zeros(1)  # dropped
    with torch.no_grad():
        vit.patch_embed.proj.bias.normal_()  # a bias the key map must fold
        official["module.visual.patch_embed.proj.bias"] = vit.patch_embed.proj.bias.clone()
    model.load_state_dict(convert_aclip_state_dict(official))
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = vit.forward_features(images)[:, 0] @ projection
        assert torch.allclose(model.eval().encode_image(images), expected, atol=1e-5)
