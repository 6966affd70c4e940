"""A-CLIP (Attentive Mask CLIP): keep the image tokens an EMA encoder attends to.

Paper: Yifan Yang, Weiquan Huang, Yixuan Wei, Houwen Peng, Xinyang Jiang, Huiqiang Jiang,
Fangyun Wei, Yin Wang, Han Hu, Lili Qiu, Yuqing Yang. "Attentive Mask CLIP", ICCV 2023,
https://arxiv.org/abs/2212.08653. Official code: microsoft/A-CLIP (``models.py``,
``losses.py``).

Paper / code -> here (the image tower is open_clip's ``VisionTransformer``, run token by token
here so tokens can be dropped and attention read):

- Attention of the EMA encoder (Sec. 3.2, ``forward_features(need_attn=True)``):
  :func:`cls_attention` — the post-softmax attention of every block, averaged over all layers
  and heads, the [CLS] query's row over the patch keys.
- Token selection (``get_att_mask``): :func:`attentive_keep_indices` — the score map pooled to
  blocks of ``block`` × ``block`` patches (the code's bilinear downsampling by 2 is exactly a
  2 × 2 average), the top :func:`keep_count` blocks kept (``floor(n r) + 1``, 25 of 49 in the
  paper), expanded back to patches. :func:`random_keep_indices` — the random baseline at the
  same granularity and count (FLIP-style token removal).
- The online encoder sees only kept tokens (:func:`encode_image_kept`): position embeddings
  are added before the drop, [CLS] is always kept, no mask tokens (MAE-style).
- Views (Sec. 3.3): the online views are shifted copies of the image (:func:`shift_images`),
  the EMA view is the unshifted image and its score map is shifted with the view
  (:func:`shift_scores`), the toy counterpart of the code's ``get_mask`` crop mapping.
- Losses (``ACLIPLoss``): :class:`ACLIP` — 0.5 CLIP(view 1) + 0.5 CLIP(view 2) + 1.0 SimCLR
  (online–online, tau 0.1, SLIP's form, :func:`simclr_loss`) + 2.0 BYOL (online predictor vs EMA
  projector on the EMA view, 2 - 2 cos, :func:`byol_loss`); weights configurable.
- EMA (``main.py``): :func:`ema_momentum` (cosine from ``base`` to 1 over training) and
  :func:`ema_update`, applied at the start of each step as in the code.
- Cost: :func:`encoder_flops` counts the image tower's FLOPs with torch's ``FlopCounterMode``.

Departures, deliberate:

- The public code's SimCLR term pairs view 1 with itself (``image_ssl_embed[:bs]`` twice);
  here the positive is the other view (``fix_simclr_views=True``; set False for the code's).
- Views are integer patch shifts of the image, not random-resized crops with colour jitter (at
  32 px a crop would often cut the small object out); the EMA view is not zoomed out.
- The patch embedding is trainable by default (the code freezes it; at toy scale a frozen random
  projection costs accuracy). ``freeze_patch_embed=True`` restores the code's choice.
- BatchNorm in the heads is plain BatchNorm (no SyncBN on one process); MLP widths scale with the
  toy model (``head_width``) instead of 4096/256.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.errors import ParameterError

from .models import contrastive_loss

__all__ = ["cls_attention", "keep_count", "block_scores", "attentive_keep_indices",
           "random_keep_indices", "encode_image_kept", "shift_images", "shift_scores",
           "ema_momentum", "ema_update", "simclr_loss", "byol_loss", "ACLIPConfig", "ACLIP",
           "object_patch_mask", "patch_retention", "encoder_flops", "mlp_head", "scene_batches",
           "train_aclip", "scenes_tokenizer", "convert_aclip_state_dict", "aclip_open_clip_model",
           "load_aclip_checkpoint", "ACLIP_VIT_B16"]


# --------------------------------------------------------------------------- attention
def _attention_probs(block: nn.Module, x: Tensor) -> Tensor:
    """Post-softmax attention (B, heads, L, L) of an open_clip ResidualAttentionBlock."""
    attn = block.attn
    h = block.ln_1(x)
    heads, width = attn.num_heads, attn.embed_dim
    q, k, _ = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).split(width, dim=-1)
    batch, length = h.shape[:2]
    q = q.reshape(batch, length, heads, width // heads).transpose(1, 2)
    k = k.reshape(batch, length, heads, width // heads).transpose(1, 2)
    return (q @ k.transpose(-1, -2) / math.sqrt(width // heads)).softmax(-1)


@torch.no_grad()
def cls_attention(visual: nn.Module, images: Tensor) -> Tensor:
    """(B, num_patches) [CLS]-to-patch attention of ``visual`` (an open_clip
    VisionTransformer) on ``images``, averaged over all layers and heads (the code's
    ``need_attn`` path)."""
    x = visual._embeds(images)
    total = 0.0
    blocks = visual.transformer.resblocks
    for block in blocks:
        total = total + _attention_probs(block, x)[:, :, 0, 1:].mean(1)
        x = block(x)
    return total / len(blocks)


def keep_count(num_blocks: int, keep_ratio: float) -> int:
    """Blocks kept: ``floor(n r) + 1`` for r < 1 (the code's 25 of 49 at r = 0.5), n at 1."""
    if not 0 < keep_ratio <= 1:
        raise ParameterError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    return num_blocks if keep_ratio == 1 else min(num_blocks, int(num_blocks * keep_ratio) + 1)


def block_scores(scores: Tensor, grid: int, block: int) -> Tensor:
    """(B, grid²) patch scores -> (B, (grid/block)²) block scores (mean of each block)."""
    if grid % block:
        raise ParameterError(f"grid {grid} is not a multiple of the masking block {block}")
    maps = scores.reshape(-1, 1, grid, grid)
    return F.avg_pool2d(maps, block).flatten(1)


def _blocks_to_patches(block_idx: Tensor, grid: int, block: int) -> Tensor:
    cells = grid // block
    row, col = block_idx // cells, block_idx % cells
    dy, dx = torch.meshgrid(torch.arange(block), torch.arange(block), indexing="ij")
    rows = row[..., None] * block + dy.flatten().to(block_idx.device)
    cols = col[..., None] * block + dx.flatten().to(block_idx.device)
    return (rows * grid + cols).flatten(-2).sort(-1).values


def attentive_keep_indices(scores: Tensor, grid: int, keep_ratio: float = 0.5,
                           block: int = 2) -> Tensor:
    """(B, kept) sorted patch indices of the top-scoring blocks."""
    per_block = block_scores(scores, grid, block)
    k = keep_count(per_block.shape[1], keep_ratio)
    top = per_block.argsort(dim=1, descending=True, stable=True)[:, :k]
    return _blocks_to_patches(top, grid, block)


def random_keep_indices(batch: int, grid: int, keep_ratio: float = 0.5, block: int = 2, *,
                        generator: torch.Generator | None = None) -> Tensor:
    """(B, kept) sorted patch indices of uniformly random blocks (same count as attentive)."""
    if grid % block:
        raise ParameterError(f"grid {grid} is not a multiple of the masking block {block}")
    n = (grid // block) ** 2
    k = keep_count(n, keep_ratio)
    top = torch.rand(batch, n, generator=generator).argsort(dim=1)[:, :k]
    return _blocks_to_patches(top, grid, block)


def encode_image_kept(visual: nn.Module, images: Tensor, keep_idx: Tensor | None = None
                      ) -> tuple[Tensor, Tensor]:
    """open_clip's ViT forward on the kept patches only: returns (embedding after ``proj``,
    pooled [CLS] before ``proj``). ``keep_idx`` None keeps every patch."""
    x = visual.conv1(images).flatten(2).transpose(1, 2)  # (B, N, width)
    pos = visual.positional_embedding.to(x.dtype)
    x = x + pos[1:]
    if keep_idx is not None:
        x = torch.gather(x, 1, keep_idx[..., None].expand(-1, -1, x.shape[-1]))
    cls = (visual.class_embedding + pos[0]).to(x.dtype).expand(x.shape[0], 1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1))
    x = visual.transformer(x)
    pooled, _ = visual._pool(x)
    return pooled @ visual.proj, pooled


# --------------------------------------------------------------------------- views
def shift_images(images: Tensor, shifts: Tensor, patch: int, fill: float) -> Tensor:
    """Each image translated by ``shifts[i] = (dy, dx)`` patches, uncovered pixels ``fill``."""
    batch, channels, height, width = images.shape
    pad = int(shifts.abs().max()) * patch if len(shifts) else 0
    if pad == 0:
        return images.clone()
    padded = F.pad(images, (pad, pad, pad, pad), value=fill)
    out = torch.empty_like(images)
    for i, (dy, dx) in enumerate(shifts.tolist()):
        top, left = pad - dy * patch, pad - dx * patch
        out[i] = padded[i, :, top:top + height, left:left + width]
    return out


def shift_scores(scores: Tensor, shifts: Tensor, grid: int) -> Tensor:
    """The (B, grid²) score map moved with its view (uncovered patches score 0)."""
    maps = scores.reshape(-1, 1, grid, grid)
    return shift_images(maps, shifts, 1, 0.0).flatten(1)


def object_patch_mask(object_masks: Tensor, patch: int) -> Tensor:
    """(B, grid²) True where a patch holds any object pixel."""
    pooled = F.max_pool2d(object_masks[:, None].float(), patch)
    return pooled.flatten(1) > 0


def patch_retention(keep_idx: Tensor, object_patches: Tensor) -> Tensor:
    """Fraction of each image's object patches that were kept (NaN-free: images with no object
    patch count as 1)."""
    kept = torch.zeros_like(object_patches).scatter_(1, keep_idx, True)
    total = object_patches.sum(1).clamp(min=1)
    return (kept & object_patches).sum(1) / total


# --------------------------------------------------------------------------- EMA
def ema_momentum(step: int, total_steps: int, base: float = 0.996) -> float:
    """m_k = 1 - (1 - base) (cos(pi k / K) + 1) / 2."""
    return 1 - (1 - base) * (math.cos(math.pi * step / max(total_steps, 1)) + 1) / 2


@torch.no_grad()
def ema_update(ema: nn.Module, online: nn.Module, momentum: float) -> None:
    """theta_ema <- m theta_ema + (1 - m) theta_online (parameters and float buffers)."""
    for e, o in zip(ema.parameters(), online.parameters()):
        e.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
    for e, o in zip(ema.buffers(), online.buffers()):
        if e.dtype.is_floating_point:
            e.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
        else:
            e.copy_(o)


# --------------------------------------------------------------------------- losses
def simclr_loss(q_a: Tensor, q_b: Tensor, temperature: float = 0.1) -> Tensor:
    """NT-Xent in SLIP's form: for view a, logits [q_a k_b^T / tau ; q_a k_a^T / tau - 1e9 I]
    with the positive on the first block's diagonal; mean of both directions."""
    q_a, q_b = F.normalize(q_a, dim=-1), F.normalize(q_b, dim=-1)
    n = q_a.shape[0]
    eye = torch.eye(n, device=q_a.device) * 1e9
    labels = torch.arange(n, device=q_a.device)
    logits_ab, logits_ba = q_a @ q_b.T / temperature, q_b @ q_a.T / temperature
    logits_aa, logits_bb = q_a @ q_a.T / temperature - eye, q_b @ q_b.T / temperature - eye
    loss_a = F.cross_entropy(torch.cat([logits_ab, logits_aa], 1), labels)
    loss_b = F.cross_entropy(torch.cat([logits_ba, logits_bb], 1), labels)
    return 0.5 * (loss_a + loss_b)


def byol_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """2 - 2 cos(p, z), mean over the batch."""
    return (2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=-1)).mean()


def mlp_head(dims: list[int], last_bn: bool = False) -> nn.Sequential:
    """Linear-BN-ReLU blocks, then a Linear (optionally followed by BN)."""
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-2], dims[1:-1]):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-2], dims[-1]))
    if last_bn:
        layers.append(nn.BatchNorm1d(dims[-1]))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- the model
@dataclass
class ACLIPConfig:
    masking: Literal["none", "random", "attentive"] = "attentive"
    keep_ratio: float = 0.5
    views: int = 1
    block: int = 2
    max_shift: int = 1  # in patches
    clip_weight: float = 0.5  # per view, ACLIPLoss
    simclr_weight: float = 0.0  # paper: 1.0 (full A-CLIP)
    byol_weight: float = 0.0  # paper: 2.0
    simclr_temperature: float = 0.1
    ema_base: float = 0.99  # paper: 0.996 over 25 epochs; a few hundred steps need faster
    total_steps: int = 300
    head_width: int = 128
    head_dim: int = 32
    fix_simclr_views: bool = True
    freeze_patch_embed: bool = False
    fill: float = -0.84  # the scenes' background value

    def __post_init__(self) -> None:
        if self.masking not in ("none", "random", "attentive"):
            raise ParameterError(f"unknown masking {self.masking!r}: none, random or attentive")
        if self.views not in (1, 2):
            raise ParameterError(f"views must be 1 or 2, got {self.views}")
        if (self.simclr_weight or self.byol_weight) and self.views != 2:
            raise ParameterError("the SimCLR/BYOL terms need two views (views=2)")
        keep_count(4, self.keep_ratio)


class ACLIP(nn.Module):
    """An open_clip CLIP trained A-CLIP's way. ``loss(batch, generator)`` is the training
    objective (call through ``repro.train.fit`` with :meth:`loss_fn`)."""

    def __init__(self, clip: nn.Module, config: ACLIPConfig):
        super().__init__()
        self.clip, self.config = clip, config
        visual = clip.visual
        self.patch = visual.patch_size[0]
        self.grid = visual.grid_size[0]
        if config.freeze_patch_embed:
            visual.conv1.weight.requires_grad_(False)
        self.ema_visual = copy.deepcopy(visual).requires_grad_(False)
        width = visual.conv1.out_channels
        if config.simclr_weight:
            self.simclr_head = mlp_head([width, config.head_width, config.head_width,
                                         config.head_dim])
        if config.byol_weight:
            self.byol_projector = mlp_head([width, config.head_width, config.head_dim])
            self.byol_predictor = mlp_head([config.head_dim, config.head_width, config.head_dim])
            self.ema_projector = copy.deepcopy(self.byol_projector).requires_grad_(False)
        self.step = 0

    def encode_image(self, images: Tensor) -> Tensor:  # evaluation: all tokens
        return self.clip.encode_image(images)

    def encode_text(self, texts: Tensor) -> Tensor:
        return self.clip.encode_text(texts)

    def keep_indices(self, images: Tensor, ema_scores: Tensor | None, shifts: Tensor,
                     generator: torch.Generator | None) -> Tensor | None:
        cfg = self.config
        if cfg.masking == "none":
            return None
        if cfg.masking == "random":
            return random_keep_indices(len(images), self.grid, cfg.keep_ratio, cfg.block,
                                       generator=generator).to(images.device)
        return attentive_keep_indices(shift_scores(ema_scores, shifts, self.grid), self.grid,
                                      cfg.keep_ratio, cfg.block)

    def loss(self, batch: dict, generator: torch.Generator | None = None
             ) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        images, texts = batch["images"], batch["texts"]
        with torch.no_grad():  # the EMA update opens each step, as in the code
            m = ema_momentum(self.step, cfg.total_steps, cfg.ema_base)
            ema_update(self.ema_visual, self.clip.visual, m)
            if cfg.byol_weight:
                ema_update(self.ema_projector, self.byol_projector, m)
            self.clip.logit_scale.clamp_(0, math.log(100))
        self.step += 1
        needs_ema = cfg.masking == "attentive" or cfg.byol_weight
        ema_scores = ema_pooled = None
        if needs_ema:
            self.ema_visual.eval()
            with torch.no_grad():
                if cfg.masking == "attentive":
                    ema_scores = cls_attention(self.ema_visual, images)
                if cfg.byol_weight:
                    ema_pooled = encode_image_kept(self.ema_visual, images)[1]
        text = F.normalize(self.clip.encode_text(texts), dim=-1)
        scale = self.clip.logit_scale.exp()
        object_patches = (object_patch_mask(batch["object_masks"], self.patch)
                          if "object_masks" in batch else None)
        clip_terms, pooled, retention = [], [], []
        for _ in range(cfg.views):
            shifts = torch.randint(-cfg.max_shift, cfg.max_shift + 1, (len(images), 2),
                                   generator=generator)
            view = shift_images(images, shifts, self.patch, cfg.fill)
            keep = self.keep_indices(view, ema_scores, shifts, generator)
            image, cls = encode_image_kept(self.clip.visual, view, keep)
            clip_terms.append(contrastive_loss(F.normalize(image, dim=-1), text, scale,
                                               batch.get("caption_ids")))
            pooled.append(cls)
            if object_patches is not None and keep is not None:
                moved = shift_scores(object_patches.float(), shifts, self.grid) > 0
                retention.append(patch_retention(keep, moved).mean())
        weight = cfg.clip_weight if cfg.views == 2 else 1.0
        loss = weight * sum(clip_terms)
        metrics = {"clip": float(sum(clip_terms).detach()) / len(clip_terms)}
        if cfg.simclr_weight:
            second = pooled[1] if cfg.fix_simclr_views else pooled[0]
            simclr = simclr_loss(self.simclr_head(pooled[0]), self.simclr_head(second),
                                 cfg.simclr_temperature)
            loss = loss + cfg.simclr_weight * simclr
            metrics["simclr"] = float(simclr.detach())
        if cfg.byol_weight:
            with torch.no_grad():
                target = self.ema_projector.eval()(ema_pooled)
            both = torch.cat(pooled)
            byol = byol_loss(self.byol_predictor(self.byol_projector(both)),
                             target.repeat(len(pooled), 1))
            loss = loss + cfg.byol_weight * byol
            metrics["byol"] = float(byol.detach())
        if retention:
            metrics["object patches kept"] = float(sum(retention) / len(retention))
        return loss, metrics

    @staticmethod
    def loss_fn(seed: int = 0):
        """``loss_fn`` for ``repro.train.fit`` with its own seeded generator (views, random
        masks)."""
        generator = torch.Generator().manual_seed(seed)

        def loss_fn(model: ACLIP, batch: dict):
            return model.loss(batch, generator)

        return loss_fn


# --------------------------------------------------------------------------- cost
def encoder_flops(visual: nn.Module, images: Tensor, keep_idx: Tensor | None = None) -> int:
    """FLOPs of one forward of the image tower on the kept tokens (torch's FlopCounterMode:
    matmuls, convolutions and attention; element-wise ops are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encode_image_kept(visual, images, keep_idx)
    return int(counter.get_total_flops())


# --------------------------------------------------------------------------- training
def scene_batches(data, tokens: Tensor, batch_size: int, seed: int):
    """``batch_fn(step)`` for ``repro.train.fit``: a dict of images, tokens, caption ids and
    object masks (when the data has them)."""
    from repro.data import batch_indices

    def batch_fn(step: int) -> dict:
        idx = batch_indices(len(data), batch_size, step, seed=seed)
        batch = {"images": data.images[idx], "texts": tokens[idx],
                 "caption_ids": data.caption_ids[idx]}
        if data.object_masks is not None:
            batch["object_masks"] = data.object_masks[idx]
        return batch

    return batch_fn


def train_aclip(clip: nn.Module, config: ACLIPConfig, train, test, tokenizer, *, steps: int,
                batch_size: int, lr: float, seed: int, eval_every: int = 0,
                templates=None, desc: str = "A-CLIP", progress: bool = True):
    """Train ``clip`` the A-CLIP way through ``repro.train.fit``; returns (ACLIP, History) with
    zero-shot top-1 and R@1/5/10 (%) on ``test`` in ``history.evals``."""
    from dataclasses import replace

    from repro.train import TrainConfig, fit

    from .data import SCENE_TEMPLATES
    from .evaluate import evaluate_clip

    config = replace(config, total_steps=steps)
    model = ACLIP(clip, config)
    templates = list(templates or SCENE_TEMPLATES)

    def evaluate(m: ACLIP) -> dict[str, float]:
        return evaluate_clip(m.clip, tokenizer, test, templates)

    history = fit(model, ACLIP.loss_fn(seed), scene_batches(train, tokenizer(train.captions),
                                                            batch_size, seed),
                  TrainConfig(steps=steps, lr=lr, warmup_steps=steps // 10, weight_decay=0.1,
                              betas=(0.9, 0.98), grad_clip=5.0, eval_every=eval_every,
                              progress=progress, desc=desc), eval_fn=evaluate)
    return model, history


def scenes_tokenizer(train, test, context_length: int = 12):
    """open_clip's BPE restricted to the scenes' captions and zero-shot prompts."""
    from .data import SCENE_TEMPLATES
    from .models import CaptionTokenizer

    prompts = [t.format(c) for t in SCENE_TEMPLATES for c in train.classnames]
    return CaptionTokenizer.fit(list(train.captions) + list(test.captions) + prompts,
                                context_length)


# --------------------------------------------------------------------------- released weights
ACLIP_VIT_B16 = {  # the official ACLIP_VITB16: timm ViT-B/16 image tower, CLIP text tower
    "embed_dim": 512,
    "vision_cfg": {"image_size": 224, "patch_size": 16, "width": 768, "layers": 12,
                   "head_width": 64, "no_ln_pre": True, "norm_kwargs": {"eps": 1e-6}},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8,
                 "layers": 12},
}
_ACLIP_VISUAL_KEYS = {"norm1.": "ln_1.", "norm2.": "ln_2.", "attn.qkv.": "attn.in_proj_",
                      "attn.proj.": "attn.out_proj.", "mlp.fc1.": "mlp.c_fc.",
                      "mlp.fc2.": "mlp.c_proj."}
ACLIP_DROPPED_PREFIXES = ("visual_ema.", "transformer_e.", "image_projection_e",
                          "text_projection_e", "image_mlp.", "im_proj_byol", "im_pred_byol")


def convert_aclip_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map an official A-CLIP checkpoint (``checkpoint["state_dict"]``, SLIP-style names: a
    timm ViT as ``visual.*``, ``image_projection``, OpenAI CLIP's text tower) onto open_clip's
    CLIP names. The EMA towers and the SSL heads are dropped. timm's patch embedding has a
    bias, open_clip's ``conv1`` has none: the bias is added to the patch positions of the
    position embedding, which is exact (every patch token gets it, [CLS] does not)."""
    sd = {k[len("module."):] if k.startswith("module.") else k: v
          for k, v in state_dict.items()}
    out: dict[str, Tensor] = {}
    bias = None
    for key, value in sd.items():
        if key.startswith(ACLIP_DROPPED_PREFIXES):
            continue
        if not key.startswith("visual."):
            out[key] = value
            continue
        name = key[len("visual."):]
        if name == "patch_embed.proj.weight":
            out["visual.conv1.weight"] = value
        elif name == "patch_embed.proj.bias":
            bias = value
        elif name == "cls_token":
            out["visual.class_embedding"] = value.reshape(-1)
        elif name == "pos_embed":
            out["visual.positional_embedding"] = value.reshape(value.shape[-2], value.shape[-1])
        elif name.startswith("norm."):
            out["visual.ln_post." + name[len("norm."):]] = value
        elif name.startswith("blocks."):
            _, layer, rest = name.split(".", 2)
            for old, new in _ACLIP_VISUAL_KEYS.items():
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
            out[f"visual.transformer.resblocks.{layer}.{rest}"] = value
        else:
            raise ParameterError(f"unexpected A-CLIP image-tower tensor {key!r}")
    if "image_projection" in out:
        out["visual.proj"] = out.pop("image_projection")
    if bias is not None:
        pos = out["visual.positional_embedding"].clone()
        pos[1:] += bias
        out["visual.positional_embedding"] = pos
    return out


def aclip_open_clip_model(config: dict | None = None, *, name: str = "repro-aclip-vit-b-16"):
    """An open_clip CLIP shaped like A-CLIP's released models (no pre-LN, LayerNorm eps 1e-6
    in the image tower as timm; QuickGELU in the text tower as OpenAI's CLIP), random init;
    load :func:`convert_aclip_state_dict`'s output into it."""
    import json
    import logging

    import open_clip
    from open_clip.transformer import QuickGELU

    from repro.io import atomic_write_text

    from .models import _config_dir

    path = _config_dir() / f"{name}.json"
    atomic_write_text(path, json.dumps(config or ACLIP_VIT_B16, sort_keys=True))
    open_clip.add_model_config(path)
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        model = open_clip.create_model(name, pretrained=None)
    finally:
        logging.disable(previous)
    for block in model.transformer.resblocks:
        block.mlp.gelu = QuickGELU()
    return model


def load_aclip_checkpoint(path, *, manifest: str = "aclip-checkpoints"):
    """Load an official A-CLIP ``.pt`` checkpoint (``weights_only=True``) into
    :func:`aclip_open_clip_model`; a missing file names the manifest."""
    from pathlib import Path

    from repro.errors import CheckpointError, DataUnavailableError

    path = Path(path)
    if not path.is_file():
        raise DataUnavailableError(f"no A-CLIP checkpoint at {path}; see "
                                   f"data/manifests/{manifest}.yaml")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({err})") from err
    model = aclip_open_clip_model()
    try:
        model.load_state_dict(convert_aclip_state_dict(blob.get("state_dict", blob)))
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit A-CLIP ViT-B/16: {str(err)[:300]}") from err
    return model.eval()
