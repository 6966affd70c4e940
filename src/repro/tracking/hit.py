"""HiT: a lightweight hierarchical vision transformer for efficient tracking.

Paper: Ben Kang, Xin Chen, Dong Wang, Houwen Peng, Huchuan Lu. "Exploring Lightweight
Hierarchical Vision Transformers for Efficient Visual Tracking", ICCV 2023,
https://arxiv.org/abs/2308.06904. Official code: kangben258/HiT (``lib/models/HiT``).

What is implemented, in the paper's words (Sec. 3, Fig. 2; hit.md Sec. 2.1):

- One stream: template and search images share a patch embedding (LeViT's stride-16 stem of
  Conv3x3-BN + Hardswish; ``stem_layers`` sets the stride, 2**layers) and are processed *jointly*
  by a three-stage LeViT: ``LeViTAttention`` (queries/keys of ``key_dim`` per head, values
  ``attn_ratio * key_dim``, Hardswish then Linear-BN projection) and MLP blocks, each residual;
  between stages ``ShrinkAttention`` takes its queries from the search and template grids
  subsampled *separately* by 2 and keys/values from all tokens (LeViT's subsample attention).
- Dual-image position encoding (``DualImageBias``): a learned attention bias per head indexed
  by the offset (|dr|, |dc|) between two tokens on one canvas where the search grid sits at
  (0..Rx-1) and the template grid at (Rx + i, Rx + j), so no coordinate is shared between the
  two images; in shrink attention the query grid is scaled by the stride (code: "ori_pos").
- Bridge Module (``BridgeModule``, neck "FB"): the search maps of stages 3, 2, 1 fused top-down
  with ConvTranspose2d(2, 2) + BN and additions (ReLU after the first), then a Linear to the
  head's width; the global token (mean of all stage-3 tokens) projected alike.
- Corner head (``CornerHead``): the search map weighted by its dot product with the global
  token, two conv branches (top-left, bottom-right), soft-argmax over the cells.
- Loss (``hit_loss``): 2 * GIoU + 5 * L1 on normalised (x1, y1, x2, y2) (Sec. 3.4).

Departures (tiny CPU scale; see hit.md "Measured feasibility"):

- Toy sizes (``hit_toy``): 64-px search, 32-px template, a stride-8 stem (three convs; 8x8 and
  4x4 tokens, 80 -> 20 -> 5 over the stages), 1 block per stage, C = 32/64/96, two conv layers
  per corner branch instead of four, head width 64. ``HiTConfig``'s default stem is stride 4.
- Soft-argmax over cell *centres* ((k + 0.5) / R) instead of the code's cell index x stride
  (top-left corners), which biases boxes by half a cell and cannot reach the far border.
- ``neck="last"`` is our Bridge ablation: the stage-3 map through a 1x1 conv, upsampled
  bilinearly to the stage-1 resolution, same head. ``position="none"`` drops the bias.
- The template is never updated and no Hanning window is used, as in the paper. Boxes are
  clipped with a 4-px minimum side instead of a 10-px margin (our frames are 96 px).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.errors import CheckpointError, ParameterError

__all__ = ["HiTConfig", "LinearBN", "PatchEmbed", "DualImageBias", "LeViTAttention",
           "ShrinkAttention", "MLP", "HiTBackbone", "BridgeModule", "LastStageNeck",
           "CornerHead", "HiT", "hit_loss", "giou", "create_model", "TOY_VARIANTS",
           "PAPER_VARIANTS", "export_onnx", "convert_official_state_dict", "train", "tracker",
           "count_parameters"]


@dataclass
class HiTConfig:
    search_size: int = 64
    template_size: int = 32
    stem_layers: int = 2  # stride 2**stem_layers (LeViT: 4 -> 16)
    embed_dims: tuple[int, int, int] = (32, 64, 96)
    num_heads: tuple[int, int, int] = (2, 4, 6)
    depths: tuple[int, int, int] = (1, 1, 1)
    key_dim: int = 16
    attn_ratio: float = 2.0
    mlp_ratio: float = 2.0
    shrink_attn_ratio: float = 4.0
    head_dim: int = 64
    head_layers: int = 2
    neck: Literal["bridge", "last"] = "bridge"
    position: Literal["dual", "none"] = "dual"

    def __post_init__(self) -> None:
        stride = 2 ** self.stem_layers
        for name in ("search_size", "template_size"):
            size = getattr(self, name)
            if size % (stride * 4):
                raise ParameterError(f"{name}={size} must be a multiple of 4 * 2**stem_layers "
                                     f"= {stride * 4} (two 2x shrink stages)")
        if self.neck not in ("bridge", "last"):
            raise ParameterError(f"neck must be 'bridge' or 'last', got {self.neck!r}")
        if self.position not in ("dual", "none"):
            raise ParameterError(f"position must be 'dual' or 'none', got {self.position!r}")

    @property
    def grids(self) -> list[tuple[int, int]]:
        """(search side, template side) in tokens at stages 1, 2, 3."""
        stride = 2 ** self.stem_layers
        rx, rz = self.search_size // stride, self.template_size // stride
        return [(rx, rz), (rx // 2, rz // 2), (rx // 4, rz // 4)]


#: The paper's variants (hit.md Sec. 2.1, from the code configs); 256-px search, 128-px template.
PAPER_VARIANTS: dict[str, dict] = {
    "hit_base": dict(embed_dims=(384, 512, 768), num_heads=(6, 9, 12), depths=(4, 4, 4),
                     key_dim=32),
    "hit_small": dict(embed_dims=(128, 256, 384), num_heads=(4, 8, 12), depths=(4, 4, 4)),
    "hit_tiny": dict(embed_dims=(128, 256, 384), num_heads=(4, 6, 8), depths=(2, 3, 4)),
}
for _v in PAPER_VARIANTS.values():
    _v.update(search_size=256, template_size=128, stem_layers=4, head_dim=256, head_layers=4)

#: Toy variants for CPU notebooks.
TOY_VARIANTS: dict[str, dict] = {
    "hit_toy": dict(stem_layers=3),
    "hit_toy_no_bridge": dict(stem_layers=3, neck="last"),
}


class LinearBN(nn.Sequential):
    """Linear without bias + BatchNorm1d over tokens (LeViT's ``Linear_BN``)."""

    def __init__(self, in_dim: int, out_dim: int, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("linear", nn.Linear(in_dim, out_dim, bias=False))
        self.add_module("bn", nn.BatchNorm1d(out_dim))
        nn.init.constant_(self.bn.weight, bn_weight_init)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        x = self.linear(x)
        return self.bn(x.flatten(0, 1)).reshape(b, n, -1)


class PatchEmbed(nn.Sequential):
    """LeViT's stem: ``layers`` x (Conv3x3 stride 2 + BN), Hardswish between them."""

    def __init__(self, out_dim: int, layers: int) -> None:
        super().__init__()
        dims = [3] + [out_dim // 2 ** (layers - 1 - i) for i in range(layers)]
        for i in range(layers):
            self.add_module(f"conv{i}", nn.Conv2d(dims[i], dims[i + 1], 3, 2, 1, bias=False))
            self.add_module(f"bn{i}", nn.BatchNorm2d(dims[i + 1]))
            if i < layers - 1:
                self.add_module(f"act{i}", nn.Hardswish())


def _canvas(side_x: int, side_z: int, scale: int = 1) -> Tensor:
    """(N, 2) canvas coordinates of the search tokens then the template tokens: search cell
    (i, j) -> (i, j), template cell (i, j) -> (Rx + i, Rx + j), Rx the search side at the key
    resolution; ``scale`` maps a subsampled query grid onto the key grid."""
    def grid(side: int) -> Tensor:
        i, j = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        return torch.stack([i.flatten(), j.flatten()], 1) * scale

    return torch.cat([grid(side_x), grid(side_z) + side_x * scale], 0)


class DualImageBias(nn.Module):
    """HiT's dual-image position encoding: one learnable bias per head and per canvas offset
    (|dr|, |dc|), added to the attention logits; zero-initialised as in the code."""

    def __init__(self, num_heads: int, key_grid: tuple[int, int],
                 query_grid: tuple[int, int] | None = None, stride: int = 1) -> None:
        super().__init__()
        rx, rz = key_grid
        keys = _canvas(rx, rz)
        queries = keys if query_grid is None else _canvas(*query_grid, scale=stride)
        offsets = (queries[:, None, :] - keys[None, :, :]).abs()  # (Nq, Nk, 2)
        extent = rx + rz
        self.register_buffer("index", offsets[..., 0] * extent + offsets[..., 1],
                             persistent=False)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, extent * extent))

    def forward(self) -> Tensor:
        return self.attention_biases[:, self.index]  # (heads, Nq, Nk)


class LeViTAttention(nn.Module):
    """LeViT attention over the joint token sequence, with the dual-image bias."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float,
                 grid: tuple[int, int], position: str) -> None:
        super().__init__()
        self.num_heads, self.key_dim = num_heads, key_dim
        self.value_dim = int(attn_ratio * key_dim)
        self.scale = key_dim ** -0.5
        self.qkv = LinearBN(dim, num_heads * (2 * key_dim + self.value_dim))
        self.proj = nn.Sequential(nn.Hardswish(),
                                  LinearBN(num_heads * self.value_dim, dim, bn_weight_init=0.0))
        self.bias = DualImageBias(num_heads, grid) if position == "dual" else None

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, self.num_heads, -1)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim], dim=3)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        logits = (q @ k.transpose(-2, -1)) * self.scale
        if self.bias is not None:
            logits = logits + self.bias()
        out = logits.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


def _subsample(x: Tensor, grid: tuple[int, int]) -> Tensor:
    """Every second token on the search grid and, separately, on the template grid."""
    rx, rz = grid
    b, _, c = x.shape
    xs = x[:, :rx * rx].reshape(b, rx, rx, c)[:, ::2, ::2].reshape(b, -1, c)
    zs = x[:, rx * rx:].reshape(b, rz, rz, c)[:, ::2, ::2].reshape(b, -1, c)
    return torch.cat([xs, zs], 1)


class ShrinkAttention(nn.Module):
    """LeViT's subsample attention between stages: queries from the 2x-subsampled grids of
    each image, keys/values from all tokens; changes the width from ``in_dim`` to ``out_dim``."""

    def __init__(self, in_dim: int, out_dim: int, key_dim: int, attn_ratio: float,
                 grid: tuple[int, int], position: str) -> None:
        super().__init__()
        self.grid = grid
        self.num_heads = in_dim // key_dim
        self.key_dim = key_dim
        self.value_dim = int(attn_ratio * key_dim)
        self.scale = key_dim ** -0.5
        self.kv = LinearBN(in_dim, self.num_heads * (key_dim + self.value_dim))
        self.q = LinearBN(in_dim, self.num_heads * key_dim)
        self.proj = nn.Sequential(nn.Hardswish(), LinearBN(self.num_heads * self.value_dim,
                                                           out_dim))
        self.bias = (DualImageBias(self.num_heads, grid, (grid[0] // 2, grid[1] // 2), stride=2)
                     if position == "dual" else None)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        kv = self.kv(x).view(b, n, self.num_heads, -1)
        k, v = kv.split([self.key_dim, self.value_dim], dim=3)
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        xq = _subsample(x, self.grid)
        q = self.q(xq).view(b, xq.shape[1], self.num_heads, self.key_dim).transpose(1, 2)
        logits = (q @ k.transpose(-2, -1)) * self.scale
        if self.bias is not None:
            logits = logits + self.bias()
        out = logits.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, xq.shape[1], -1))


class MLP(nn.Sequential):
    def __init__(self, dim: int, ratio: float) -> None:
        hidden = int(dim * ratio)
        super().__init__(LinearBN(dim, hidden), nn.Hardswish(),
                         LinearBN(hidden, dim, bn_weight_init=0.0))


class Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class HiTBackbone(nn.Module):
    """Stem + three LeViT stages over [search tokens; template tokens]. Returns the search
    maps of the three stages (B, C_i, R_i, R_i) and the stage-3 tokens (B, N_3, C_3)."""

    def __init__(self, cfg: HiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dims, heads, grids = cfg.embed_dims, cfg.num_heads, cfg.grids
        self.patch_embed = PatchEmbed(dims[0], cfg.stem_layers)
        self.stages = nn.ModuleList()
        self.shrinks = nn.ModuleList()
        for s in range(3):
            blocks = []
            for _ in range(cfg.depths[s]):
                blocks.append(Residual(LeViTAttention(dims[s], cfg.key_dim, heads[s],
                                                      cfg.attn_ratio, grids[s], cfg.position)))
                blocks.append(Residual(MLP(dims[s], cfg.mlp_ratio)))
            self.stages.append(nn.Sequential(*blocks))
            if s < 2:
                self.shrinks.append(nn.Sequential(
                    ShrinkAttention(dims[s], dims[s + 1], cfg.key_dim, cfg.shrink_attn_ratio,
                                    grids[s], cfg.position),
                    Residual(MLP(dims[s + 1], cfg.mlp_ratio))))

    def forward(self, template: Tensor, search: Tensor) -> tuple[list[Tensor], Tensor]:
        x = self.patch_embed(search).flatten(2).transpose(1, 2)
        z = self.patch_embed(template).flatten(2).transpose(1, 2)
        tokens = torch.cat([x, z], 1)
        maps = []
        for s in range(3):
            tokens = self.stages[s](tokens)
            rx = self.cfg.grids[s][0]
            b, _, c = tokens.shape
            maps.append(tokens[:, :rx * rx].transpose(1, 2).reshape(b, c, rx, rx))
            if s < 2:
                tokens = self.shrinks[s](tokens)
        return maps, tokens


class BridgeModule(nn.Module):
    """Top-down fusion of the three search maps (Sec. 3.2): ConvT(2, 2) + BN on stage 3, add
    stage 2, ReLU; ConvT + BN, add stage 1; Linear to the head width. The global token (mean
    of all stage-3 tokens) is projected alike."""

    def __init__(self, dims: tuple[int, int, int], head_dim: int) -> None:
        super().__init__()
        self.up3 = nn.Sequential(nn.ConvTranspose2d(dims[2], dims[1], 2, 2, bias=False),
                                 nn.BatchNorm2d(dims[1]))
        self.up2 = nn.Sequential(nn.ConvTranspose2d(dims[1], dims[0], 2, 2, bias=False),
                                 nn.BatchNorm2d(dims[0]))
        self.proj = nn.Conv2d(dims[0], head_dim, 1)
        self.global_proj = nn.Linear(dims[2], head_dim)

    def forward(self, maps: list[Tensor], tokens: Tensor) -> tuple[Tensor, Tensor]:
        f = F.relu(self.up3(maps[2]) + maps[1])
        f = self.up2(f) + maps[0]
        return self.proj(f), self.global_proj(tokens.mean(1))


class LastStageNeck(nn.Module):
    """Ablation: the stage-3 map only, 1x1 conv, bilinear upsampling to stage 1's grid."""

    def __init__(self, dims: tuple[int, int, int], head_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dims[2], head_dim, 1)
        self.global_proj = nn.Linear(dims[2], head_dim)

    def forward(self, maps: list[Tensor], tokens: Tensor) -> tuple[Tensor, Tensor]:
        f = F.interpolate(self.proj(maps[2]), size=maps[0].shape[-2:], mode="bilinear",
                          align_corners=False)
        return f, self.global_proj(tokens.mean(1))


class CornerHead(nn.Module):
    """STARK-style corner head with HiT's similarity weighting: x_p * <x_p, g>, then a conv
    branch per corner and a soft-argmax over cell centres; returns (cx, cy, w, h) in [0, 1]."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()

        def branch() -> nn.Sequential:
            mods, c = [], dim
            for i in range(layers):
                out = max(dim // 2 ** i, 16)
                mods += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                         nn.ReLU()]
                c = out
            mods.append(nn.Conv2d(c, 1, 1))
            return nn.Sequential(*mods)

        self.top_left, self.bottom_right = branch(), branch()

    @staticmethod
    def soft_argmax(score: Tensor) -> Tensor:
        b, _, h, w = score.shape
        prob = score.flatten(1).softmax(-1).view(b, h, w)
        xs = (torch.arange(w, dtype=score.dtype, device=score.device) + 0.5) / w
        ys = (torch.arange(h, dtype=score.dtype, device=score.device) + 0.5) / h
        return torch.stack([(prob.sum(1) * xs).sum(-1), (prob.sum(2) * ys).sum(-1)], -1)

    def forward(self, feature: Tensor, global_token: Tensor) -> Tensor:
        weight = (feature * global_token[:, :, None, None]).sum(1, keepdim=True)
        x = feature * weight
        tl = self.soft_argmax(self.top_left(x))
        br = self.soft_argmax(self.bottom_right(x))
        return torch.cat([(tl + br) / 2, br - tl], -1)


class HiT(nn.Module):
    def __init__(self, cfg: HiTConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or HiTConfig()
        self.backbone = HiTBackbone(cfg)
        neck = BridgeModule if cfg.neck == "bridge" else LastStageNeck
        self.neck = neck(cfg.embed_dims, cfg.head_dim)
        self.head = CornerHead(cfg.head_dim, cfg.head_layers)

    def forward(self, template: Tensor, search: Tensor) -> Tensor:
        """Boxes (cx, cy, w, h) normalised to the search crop, (B, 4)."""
        if not torch.jit.is_tracing() and (
                template.shape[-2:] != (self.cfg.template_size,) * 2
                or search.shape[-2:] != (self.cfg.search_size,) * 2):
            raise ParameterError(
                f"HiT built for a {self.cfg.template_size}-px template and a "
                f"{self.cfg.search_size}-px search, got {tuple(template.shape[-2:])} and "
                f"{tuple(search.shape[-2:])}")
        maps, tokens = self.backbone(template, search)
        feature, global_token = self.neck(maps, tokens)
        return self.head(feature, global_token)


def create_model(name: str = "hit_toy", **overrides) -> HiT:
    """A named variant (``TOY_VARIANTS`` or ``PAPER_VARIANTS``) with optional overrides."""
    table = {**TOY_VARIANTS, **PAPER_VARIANTS}
    if name not in table:
        raise ParameterError(f"unknown HiT variant {name!r}; known: {', '.join(table)}")
    unknown = set(overrides) - set(HiTConfig.__dataclass_fields__)
    if unknown:
        raise ParameterError(f"unknown HiTConfig field(s) {sorted(unknown)}")
    return HiT(HiTConfig(**{**table[name], **overrides}))


# --------------------------------------------------------------------------- loss
def _xyxy(cxcywh: Tensor) -> Tensor:
    return torch.cat([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)


def giou(a: Tensor, b: Tensor) -> Tensor:
    """Generalised IoU of matching (x1, y1, x2, y2) rows."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-7)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(1)
    return iou - (hull - union) / hull.clamp(min=1e-7)


def hit_loss(pred_cxcywh: Tensor, target_xyxy: Tensor, giou_weight: float = 2.0,
             l1_weight: float = 5.0) -> tuple[Tensor, dict[str, Tensor]]:
    """L = 2 * (1 - GIoU) + 5 * L1 on normalised (x1, y1, x2, y2) (Sec. 3.4)."""
    pred = _xyxy(pred_cxcywh)
    giou_loss = (1 - giou(pred, target_xyxy)).mean()
    l1 = F.l1_loss(pred, target_xyxy)
    return giou_weight * giou_loss + l1_weight * l1, {"giou": giou_loss.detach(),
                                                       "l1": l1.detach()}


def train(model: HiT, bank, frames: Tensor | None = None, *, steps: int = 300,
          batch_size: int = 32, lr: float = 2e-3, weight_decay: float = 1e-4,
          warmup_steps: int = 30, grad_clip: float = 1.0, center_jitter: float = 2.5,
          scale_jitter: float = 0.25, seed: int = 0,
          desc: str = "HiT"):
    """Train on pairs from ``bank`` (and its pre-rendered ``frames``) with ``repro.train.fit``:
    AdamW, warm-up then cosine decay, gradient clipping; returns fit's History."""
    from repro.train import TrainConfig, fit

    from .data import sample_pairs

    cfg = model.cfg
    generator = torch.Generator().manual_seed(seed)

    def batch_fn(step: int):
        p = sample_pairs(bank, batch_size, generator, template_size=cfg.template_size,
                         search_size=cfg.search_size, center_jitter=center_jitter,
                         scale_jitter=scale_jitter, frames=frames)
        return p.template, p.search, p.target

    def loss_fn(m: HiT, batch):
        return hit_loss(m(batch[0], batch[1]), batch[2])

    config = TrainConfig(steps=steps, lr=lr, weight_decay=weight_decay,
                         warmup_steps=warmup_steps, grad_clip=grad_clip, desc=desc)
    history = fit(model, loss_fn, batch_fn, config)
    model.eval()
    return history


def tracker(model: HiT, name: str = "HiT"):
    """The paper's test loop: first-frame template, search crop around the previous box."""
    from .runner import CropTracker

    cfg = model.cfg
    return CropTracker(model.eval(), name=name, template_size=cfg.template_size,
                       search_size=cfg.search_size)


# --------------------------------------------------------------------------- deployment
def export_onnx(model: HiT, path, *, opset: int = 17) -> None:
    """Export ``model`` (eval mode, batch 1) to ONNX with the TorchScript-based exporter,
    written atomically. The official export scripts fail on current PyTorch (HiT#6/#7)."""
    import warnings

    from repro.io import atomic_save

    cfg = model.cfg
    model = model.eval()
    template = torch.zeros(1, 3, cfg.template_size, cfg.template_size)
    search = torch.zeros(1, 3, cfg.search_size, cfg.search_size)

    def writer(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (template, search), tmp, dynamo=False,
                              opset_version=opset, input_names=["template", "search"],
                              output_names=["box"])

    atomic_save(path, writer)


# --------------------------------------------------------------------------- released weights
def convert_official_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a released HiT checkpoint (kangben258/HiT, ``net`` entry) to our names.

    Not available: our toy modules follow the paper's structure but not the official module
    tree (its LeViT keeps timm-0.5.4's ``blocks.{i}.m.qkv.c``/``.bn`` naming in one flat
    ``blocks`` list with the shrink stages inside it, its head has four convs per corner and
    a different soft-argmax grid, and its Bridge projects with Linear layers). Writing the map
    needs the released files to test it against, which CI cannot download; see
    ``data/manifests/hit-base-released.yaml``.
    """
    raise CheckpointError(
        "loading released HiT weights is not implemented: our module tree differs from the "
        "official one (see convert_official_state_dict's docstring and "
        "data/manifests/hit-base-released.yaml)")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
