"""EfficientViT (MSRA): memory-efficient vision transformer with cascaded group attention.

Paper: Xinyu Liu, Houwen Peng, Ningxin Zheng, Yuqing Yang, Han Hu, Yixuan Yuan. "EfficientViT:
Memory Efficient Vision Transformer with Cascaded Group Attention", CVPR 2023,
https://arxiv.org/abs/2305.07027. Official code: microsoft/Cream, ``EfficientViT/classification``.

What is implemented, in the paper's words (Sec. 3 and Fig. 2 of the paper):

- Overlapping patch embedding: four Conv3x3 stride-2 + BN layers with ReLU between (224 -> 14x14).
- The *sandwich layout* (Sec. 3.1, Eq. 1: X_{i+1} = prod^N Phi^F(Phi^A(prod^N Phi^F(X_i))),
  N = 1):
  residual token interaction (depthwise Conv3x3 + BN) -> FFN -> one attention mixer -> token
  interaction -> FFN, every branch residual.
- *Cascaded group attention* (Sec. 3.2, Eq. 2-3 and Fig. 2c): head j sees only the j-th channel
  split (Eq. 2: X~_ij = Attn(X_ij W^Q_ij, X_ij W^K_ij, X_ij W^V_ij), X~_{i+1} = Concat_j[X~_ij]
  W^P_i), plus the previous head's output (Eq. 3: X'_ij = X_ij + X~_i(j-1)); Q gets a depthwise
  conv; a
  learned relative-position bias per head; the concatenated heads go through ReLU and a
  Conv1x1 + BN projection. Applied in local 7x7 windows (zero-padded to a multiple of 7).
- Parameter reallocation (Sec. 3.3): key_dim 16, value dim = channel split, FFN expansion 2.
- Subsample block between stages: [token interaction + FFN] -> PatchMerging (Conv1x1 expand 4x,
  depthwise Conv3x3 stride 2, squeeze-excite, Conv1x1) -> [token interaction + FFN].
- Head: global average pool -> BatchNorm1d -> Linear. ``fold_batchnorm`` folds every BN into the
  neighbouring conv/linear, the paper's speed protocol (``replace_batchnorm`` in the code);
  given an example input it folds the conv + BN pairs of other models too (the baselines).
- Weights: ``create_model(..., pretrained=True)`` loads timm's copy of the release at any
  input size timm accepts; files of another variant, directories and NaN weights are refused
  with a message saying which (``check_timm_checkpoint``).

Departures from the paper and the public code (all opt-in; defaults reproduce M0-M5 exactly and
load timm's ``efficientvit_m*`` weights, see ``load_timm_state_dict``):

- ``attention="mhsa"`` swaps CGA for plain multi-head self-attention at equal width (every head
  projects Q/K/V from all C channels, no cascade; same key_dim, query depthwise conv, bias and
  output projection). It is the baseline of the paper's attention-redundancy argument (Sec. 2.3).
- ``patch_embed_layers`` sets the number of stride-2 convs of the stem (4 in the paper, /16);
  toy models on 32 px images use 2 (/4, an 8x8 token map).
- Windows are partitioned for any input size (no assertion on the training resolution); the
  relative-position bias table is sized for min(window_size, resolution) at construction, with
  resolution = img_size // 2**patch_embed_layers (img_size // 16 for M0-M5) and halved per
  stage as (r - 1) // 2 + 1, exactly as timm and the official code do. For sizes that are not
  multiples of 16 this differs from the feature map the convs produce (200 px: windows 7, 6, 3
  on maps of 13, 7, 4), and that is what the released weights were resized for by timm.
  The bias is gathered on every forward (timm caches it in eval mode).
- Equation numbers follow the arXiv version of the paper (2305.07027): Eq. 1 the sandwich
  layout, Eq. 2 group attention with its output projection, Eq. 3 the cascade.
- One stochastic-depth rate for every residual branch (``drop_path_rate``; 0 in all the paper's
  configs).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from timm.layers import DropPath, SqueezeExcite, trunc_normal_
from torch import Tensor, nn

from repro.errors import CheckpointError, DataUnavailableError

__all__ = [
    "ConvBN",
    "BatchNormLinear",
    "OverlapPatchEmbed",
    "TokenInteraction",
    "FFN",
    "CascadedGroupAttention",
    "MultiHeadSelfAttention",
    "LocalWindowAttention",
    "EfficientViTBlock",
    "PatchMerging",
    "EfficientViTSubsample",
    "EfficientViTStage",
    "EfficientViT",
    "EfficientViTConfig",
    "PaperNumbers",
    "VARIANTS",
    "TOY_VARIANTS",
    "PAPER_TABLE",
    "create_model",
    "efficientvit_m0",
    "efficientvit_m1",
    "efficientvit_m2",
    "efficientvit_m3",
    "efficientvit_m4",
    "efficientvit_m5",
    "convert_timm_state_dict",
    "load_timm_state_dict",
    "read_checkpoint",
    "identify_variant",
    "check_timm_checkpoint",
    "fold_batchnorm",
    "count_params",
    "count_flops",
    "capture_attention",
    "head_redundancy",
]


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------


class ConvBN(nn.Sequential):
    """Conv2d (no bias) followed by BatchNorm2d; ``fuse()`` folds them into one Conv2d."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1,
                 stride: int = 1, groups: int = 1, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        nn.init.constant_(self.bn.weight, bn_weight_init)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """One Conv2d equal to this conv + BN in eval mode (running statistics)."""
        conv, bn = self.conv, self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, conv.dilation, conv.groups, bias=True,
                          device=conv.weight.device, dtype=conv.weight.dtype)
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        return fused


class BatchNormLinear(nn.Sequential):
    """BatchNorm1d -> Dropout -> Linear, the classifier head; ``fuse()`` folds BN into Linear."""

    def __init__(self, in_features: int, out_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        self.drop = nn.Dropout(drop)
        self.linear = nn.Linear(in_features, out_features)
        trunc_normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        """One Linear equal to BN + Linear in eval mode (dropout is the identity there)."""
        bn, linear = self.bn, self.linear
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        fused = nn.Linear(linear.in_features, linear.out_features,
                          device=linear.weight.device, dtype=linear.weight.dtype)
        fused.weight.copy_(linear.weight * scale[None, :])
        fused.bias.copy_(linear.weight @ shift + linear.bias)
        return fused


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch embedding: ``num_layers`` Conv3x3 stride-2 + BN, ReLU between.

    Channels double layer by layer up to ``embed_dim`` (C/8, C/4, C/2, C for the paper's four
    layers, a 16x downsampling). Fewer layers give a finer token map for small images.
    """

    def __init__(self, in_chans: int, embed_dim: int, num_layers: int = 4) -> None:
        super().__init__()
        widths = [embed_dim // 2 ** (num_layers - 1 - i) for i in range(num_layers)]
        self.convs = nn.ModuleList(
            ConvBN(c_in, c_out, kernel_size=3, stride=2)
            for c_in, c_out in zip([in_chans, *widths[:-1]], widths, strict=True)
        )
        self.stride = 2**num_layers

    def forward(self, x: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = F.relu(x)
        return x


class TokenInteraction(ConvBN):
    """Depthwise Conv3x3 + BN: the residual "token interaction" branch before each FFN (Sec. 3.1).

    It adds local inductive bias at the cost of a few parameters; the caller adds the residual.
    """

    def __init__(self, dim: int, bn_weight_init: float = 0.0) -> None:
        super().__init__(dim, dim, kernel_size=3, groups=dim, bn_weight_init=bn_weight_init)


class FFN(nn.Module):
    """Conv1x1 + BN (C -> hidden) -> ReLU -> Conv1x1 + BN (hidden -> C), BN gamma of the last
    layer initialised to 0 so the residual branch starts as the identity."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.pointwise1 = ConvBN(dim, hidden_dim)
        self.pointwise2 = ConvBN(hidden_dim, dim, bn_weight_init=0.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise2(F.relu(self.pointwise1(x)))


def relative_position_index(window: int) -> Tensor:
    """[N, N] index into a per-head bias table of window**2 entries, N = window**2.

    Token pairs at the same offset (|row difference|, |column difference|) share one bias
    (LeViT style): index = |dr| * window + |dc|, the same order timm and the official code use.
    """
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    d_row = (rows[:, None] - rows[None, :]).abs()
    d_col = (cols[:, None] - cols[None, :]).abs()
    return d_row * window + d_col


class CascadedGroupAttention(nn.Module):
    """Cascaded group attention on one window (Sec. 3.2, Eq. 2-3, Fig. 2c).

    The C input channels are split into ``num_heads`` groups. Head j projects its input
    X'_j = X_j + X~_{j-1} (its own split plus the previous head's output) to a query and key of
    ``key_dim`` channels and a value of C / num_heads channels, so every head sees a different
    part of the feature (less redundancy) and later heads refine earlier ones (more depth, no
    more parameters). QKV projections are num_heads times smaller than in MHSA.

    Args:
        dim: input channels C (divisible by ``num_heads``).
        key_dim: channels of each query and key (16 in the paper).
        num_heads: number of heads h.
        window_size: side of the (square) window the input has; sizes the bias table.
        kernels: kernel size of the depthwise conv on each head's query.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, window_size: int,
                 kernels: Sequence[int]) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = dim // num_heads  # "V dim = input split" (Sec. 3.3)
        self.scale = key_dim**-0.5
        self.qkv_projections = nn.ModuleList(
            ConvBN(dim // num_heads, 2 * key_dim + self.value_dim) for _ in range(num_heads)
        )
        self.query_convs = nn.ModuleList(
            ConvBN(key_dim, key_dim, kernels[i], groups=key_dim) for i in range(num_heads)
        )
        self.proj = ConvBN(self.value_dim * num_heads, dim, bn_weight_init=0.0)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size**2))
        self.register_buffer("attention_bias_idxs", relative_position_index(window_size),
                             persistent=False)
        # set by ``capture_attention``; receives [B, heads, N, N] softmax maps
        self.attention_sink: Callable[[Tensor], None] | None = None

    @property
    def attn_ratio(self) -> float:
        """Value dim / key dim (timm's ``attn_ratio``)."""
        return self.value_dim / self.key_dim

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        bias = self.attention_biases[:, self.attention_bias_idxs]  # [h, N, N]
        splits = x.chunk(self.num_heads, dim=1)
        head_outputs, maps = [], []
        feat = splits[0]
        for i in range(self.num_heads):
            if i > 0:
                feat = feat + splits[i]  # Eq. 3 (cascade): X'_ij = X_ij + X~_i(j-1)
            q, k, v = self.qkv_projections[i](feat).split(
                [self.key_dim, self.key_dim, self.value_dim], dim=1)
            q = self.query_convs[i](q)  # token interaction on Q
            q, k, v = q.flatten(2), k.flatten(2), v.flatten(2)  # [B, d, N]
            # Eq. 2, Attn(Q, K, V) = softmax(Q K^T / sqrt(d) + B) V, per head
            attn = (q * self.scale).transpose(-2, -1) @ k + bias[i]
            attn = attn.softmax(dim=-1)
            feat = (v @ attn.transpose(-2, -1)).view(B, self.value_dim, H, W)  # X~_j
            head_outputs.append(feat)
            maps.append(attn)
        if self.attention_sink is not None:
            self.attention_sink(torch.stack(maps, dim=1))
        return self.proj(F.relu(torch.cat(head_outputs, dim=1)))  # Eq. 2: Concat[X~_ij] W^P


class MultiHeadSelfAttention(nn.Module):
    """Plain multi-head self-attention at equal width: the paper's baseline for CGA.

    Identical to :class:`CascadedGroupAttention` (key_dim, value dim C/h per head, query
    depthwise conv, relative-position bias, ReLU + Conv1x1 + BN projection) except that every
    head's Q, K, V come from all C input channels through one Conv1x1 + BN, and heads do not
    cascade.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, window_size: int,
                 kernels: Sequence[int]) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = dim // num_heads
        self.scale = key_dim**-0.5
        self.qkv = ConvBN(dim, num_heads * (2 * key_dim + self.value_dim))
        self.query_convs = nn.ModuleList(
            ConvBN(key_dim, key_dim, kernels[i], groups=key_dim) for i in range(num_heads)
        )
        self.proj = ConvBN(self.value_dim * num_heads, dim, bn_weight_init=0.0)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size**2))
        self.register_buffer("attention_bias_idxs", relative_position_index(window_size),
                             persistent=False)
        self.attention_sink: Callable[[Tensor], None] | None = None

    @property
    def attn_ratio(self) -> float:
        return self.value_dim / self.key_dim

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        bias = self.attention_biases[:, self.attention_bias_idxs]
        qkv = self.qkv(x).view(B, self.num_heads, 2 * self.key_dim + self.value_dim, H, W)
        head_outputs, maps = [], []
        for i in range(self.num_heads):
            q, k, v = qkv[:, i].split([self.key_dim, self.key_dim, self.value_dim], dim=1)
            q = self.query_convs[i](q)
            q, k, v = q.flatten(2), k.flatten(2), v.flatten(2)
            attn = ((q * self.scale).transpose(-2, -1) @ k + bias[i]).softmax(dim=-1)
            head_outputs.append((v @ attn.transpose(-2, -1)).view(B, self.value_dim, H, W))
            maps.append(attn)
        if self.attention_sink is not None:
            self.attention_sink(torch.stack(maps, dim=1))
        return self.proj(F.relu(torch.cat(head_outputs, dim=1)))


class LocalWindowAttention(nn.Module):
    """Attention inside non-overlapping windows of ``window_size`` x ``window_size`` tokens.

    The feature map is zero-padded to a multiple of the window, split into windows that are
    batched together, attended, merged back and cropped. ``window_size`` is capped at the
    feature resolution, so at 224 px the 7x7 and 4x4 maps of stages 2-3 are one window each.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, resolution: int,
                 window_size: int = 7, kernels: Sequence[int] = (5, 5, 5, 5),
                 attention: Literal["cascaded", "mhsa"] = "cascaded") -> None:
        super().__init__()
        self.window_size = min(window_size, resolution)
        attention_cls = {"cascaded": CascadedGroupAttention, "mhsa": MultiHeadSelfAttention}
        self.attention = attention_cls[attention](dim, key_dim, num_heads, self.window_size,
                                                  kernels)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        w = self.window_size
        if H == w and W == w:  # one window: nothing to partition
            return self.attention(x)
        pad_bottom, pad_right = (w - H % w) % w, (w - W % w) % w
        x = F.pad(x.permute(0, 2, 3, 1), (0, 0, 0, pad_right, 0, pad_bottom))  # B, H', W', C
        n_rows, n_cols = (H + pad_bottom) // w, (W + pad_right) // w
        # partition: B (nr w) (nc w) C -> (B nr nc) C w w
        x = x.view(B, n_rows, w, n_cols, w, C).transpose(2, 3)
        x = x.reshape(B * n_rows * n_cols, w, w, C).permute(0, 3, 1, 2)
        x = self.attention(x)
        # merge: (B nr nc) C w w -> B (nr w) (nc w) C, crop the padding
        x = x.permute(0, 2, 3, 1).view(B, n_rows, n_cols, w, w, C).transpose(2, 3)
        x = x.reshape(B, n_rows * w, n_cols * w, C)[:, :H, :W]
        return x.permute(0, 3, 1, 2).contiguous()


class EfficientViTBlock(nn.Module):
    """The sandwich block (Sec. 3.1, Eq. 1): Res(DW) -> Res(FFN) -> Res(attention) -> Res(DW)
    -> Res(FFN).

    One memory-bound attention layer between FFNs, each FFN preceded by a depthwise token
    interaction; every branch is residual (with optional stochastic depth).
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, resolution: int,
                 window_size: int = 7, kernels: Sequence[int] = (5, 5, 5, 5),
                 attention: Literal["cascaded", "mhsa"] = "cascaded", mlp_ratio: float = 2.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        hidden_dim = int(dim * mlp_ratio)
        self.token_interaction0 = TokenInteraction(dim)
        self.ffn0 = FFN(dim, hidden_dim)
        self.mixer = LocalWindowAttention(dim, key_dim, num_heads, resolution, window_size,
                                          kernels, attention)
        self.token_interaction1 = TokenInteraction(dim)
        self.ffn1 = FFN(dim, hidden_dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.token_interaction0(x))
        x = x + self.drop_path(self.ffn0(x))
        x = x + self.drop_path(self.mixer(x))
        x = x + self.drop_path(self.token_interaction1(x))
        x = x + self.drop_path(self.ffn1(x))
        return x


class PatchMerging(nn.Module):
    """Inverted-residual downsampling: Conv1x1 (C -> 4C) -> ReLU -> depthwise Conv3x3 stride 2
    -> ReLU -> squeeze-excite (ratio 0.25, timm's) -> Conv1x1 (4C -> C_out), each conv with BN."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        hidden_dim = 4 * dim
        self.expand = ConvBN(dim, hidden_dim)
        self.depthwise = ConvBN(hidden_dim, hidden_dim, kernel_size=3, stride=2,
                                groups=hidden_dim)
        self.squeeze_excite = SqueezeExcite(hidden_dim, 0.25)
        self.project = ConvBN(hidden_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.depthwise(F.relu(self.expand(x))))
        return self.project(self.squeeze_excite(x))


class EfficientViTSubsample(nn.Module):
    """The subsample block between stages (Fig. 2a): Res(DW) -> Res(FFN) at C_in,
    PatchMerging to C_out at half resolution, Res(DW) -> Res(FFN) at C_out."""

    def __init__(self, in_dim: int, out_dim: int, mlp_ratio: float = 2.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.token_interaction0 = TokenInteraction(in_dim, bn_weight_init=1.0)
        self.ffn0 = FFN(in_dim, int(in_dim * mlp_ratio))
        self.patch_merging = PatchMerging(in_dim, out_dim)
        self.token_interaction1 = TokenInteraction(out_dim, bn_weight_init=1.0)
        self.ffn1 = FFN(out_dim, int(out_dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.token_interaction0(x))
        x = x + self.drop_path(self.ffn0(x))
        x = self.patch_merging(x)
        x = x + self.drop_path(self.token_interaction1(x))
        x = x + self.drop_path(self.ffn1(x))
        return x


class EfficientViTStage(nn.Module):
    """An optional subsample block followed by ``depth`` sandwich blocks at one width."""

    def __init__(self, in_dim: int, embed_dim: int, depth: int, key_dim: int, num_heads: int,
                 resolution: int, window_size: int, kernels: Sequence[int],
                 attention: Literal["cascaded", "mhsa"] = "cascaded", downsample: bool = False,
                 mlp_ratio: float = 2.0, drop_path: float = 0.0) -> None:
        super().__init__()
        if downsample:
            self.downsample: nn.Module = EfficientViTSubsample(in_dim, embed_dim, mlp_ratio,
                                                               drop_path)
            resolution = (resolution - 1) // 2 + 1
        else:
            self.downsample = nn.Identity()
        self.resolution = resolution
        self.blocks = nn.Sequential(*(
            EfficientViTBlock(embed_dim, key_dim, num_heads, resolution, window_size, kernels,
                              attention, mlp_ratio, drop_path)
            for _ in range(depth)
        ))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


# ----------------------------------------------------------------------------------------------
# Configuration and the model
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EfficientViTConfig:
    """Everything that defines an EfficientViT. Defaults are M0 (Table 1 / README of the paper)."""

    embed_dims: tuple[int, ...] = (64, 128, 192)  # C1, C2, C3
    depths: tuple[int, ...] = (1, 2, 3)  # L1, L2, L3
    num_heads: tuple[int, ...] = (4, 4, 4)  # H1, H2, H3
    key_dim: int = 16
    window_size: int = 7
    kernels: tuple[int, ...] = (5, 5, 5, 5)  # query depthwise-conv kernel of head 1, 2, ...
    img_size: int = 224
    in_chans: int = 3
    num_classes: int = 1000
    attention: Literal["cascaded", "mhsa"] = "cascaded"
    patch_embed_layers: int = 4  # stride-2 convs in the stem: 4 -> 16x downsampling (paper)
    mlp_ratio: float = 2.0  # FFN expansion (Sec. 3.3: 2 instead of 4)
    drop_rate: float = 0.0  # dropout before the classifier
    drop_path_rate: float = 0.0  # stochastic depth on every residual branch

    def __post_init__(self) -> None:
        for name in ("embed_dims", "depths", "num_heads", "kernels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not len(self.embed_dims) == len(self.depths) == len(self.num_heads):
            raise ValueError("embed_dims, depths and num_heads need one entry per stage, got "
                             f"{self.embed_dims}, {self.depths}, {self.num_heads}")
        for dim, heads in zip(self.embed_dims, self.num_heads, strict=True):
            if dim % heads:
                raise ValueError(f"embed_dim {dim} is not divisible by num_heads {heads}")
        if len(self.kernels) < max(self.num_heads):
            raise ValueError(f"kernels {self.kernels} needs one entry per head "
                             f"(up to {max(self.num_heads)})")
        if self.attention not in ("cascaded", "mhsa"):
            raise ValueError(f"attention must be 'cascaded' or 'mhsa', got {self.attention!r}")
        if self.patch_embed_layers < 1 or self.embed_dims[0] % 2 ** (self.patch_embed_layers - 1):
            raise ValueError(f"embed_dims[0]={self.embed_dims[0]} must be divisible by "
                             f"2**(patch_embed_layers - 1) = {2 ** (self.patch_embed_layers - 1)}")
        if self.img_size < 2**self.patch_embed_layers:
            raise ValueError(f"img_size {self.img_size} is smaller than the stem's stride "
                             f"{2**self.patch_embed_layers} (patch_embed_layers="
                             f"{self.patch_embed_layers})")


@dataclass(frozen=True)
class PaperNumbers:
    """Reference numbers of one variant, from the official README model-zoo table."""

    params_m: float  # parameters, millions
    flops_m: float  # "FLOPs" column, millions (multiply-accumulates; see ``count_flops``)
    top1: float  # ImageNet-1k top-1 at 224 px


#: M0-M5 exactly as in the official ``build.py`` and timm's ``efficientvit_msra.py``.
VARIANTS: dict[str, EfficientViTConfig] = {
    "efficientvit_m0": EfficientViTConfig((64, 128, 192), (1, 2, 3), (4, 4, 4),
                                          kernels=(5, 5, 5, 5)),
    "efficientvit_m1": EfficientViTConfig((128, 144, 192), (1, 2, 3), (2, 3, 3),
                                          kernels=(7, 5, 3, 3)),
    "efficientvit_m2": EfficientViTConfig((128, 192, 224), (1, 2, 3), (4, 3, 2),
                                          kernels=(7, 5, 3, 3)),
    "efficientvit_m3": EfficientViTConfig((128, 240, 320), (1, 2, 3), (4, 3, 4),
                                          kernels=(5, 5, 5, 5)),
    "efficientvit_m4": EfficientViTConfig((128, 256, 384), (1, 2, 3), (4, 4, 4),
                                          kernels=(7, 5, 3, 3)),
    "efficientvit_m5": EfficientViTConfig((192, 288, 384), (1, 3, 4), (3, 3, 4),
                                          kernels=(7, 5, 3, 3)),
}

#: Source: microsoft/Cream, EfficientViT/README.md, "Model Zoo" table (ImageNet-1k, 224 px).
#: ``count_flops`` gives 79.2 / 167.1 / 201.0 / 262.7 / 299.3 / 521.6 M MACs. ``params_m`` matches
#: the BN-folded model to one decimal for all six (2.33 ... 12.44 M); the training-time count
#: (= timm's) is up to 0.07 M larger (2.35 / 2.98 / 4.19 / 6.90 / 8.80 / 12.47 M).
PAPER_TABLE: dict[str, PaperNumbers] = {
    "efficientvit_m0": PaperNumbers(params_m=2.3, flops_m=79, top1=63.2),
    "efficientvit_m1": PaperNumbers(params_m=3.0, flops_m=167, top1=68.4),
    "efficientvit_m2": PaperNumbers(params_m=4.2, flops_m=201, top1=70.8),
    "efficientvit_m3": PaperNumbers(params_m=6.9, flops_m=263, top1=73.4),
    "efficientvit_m4": PaperNumbers(params_m=8.8, flops_m=299, top1=74.3),
    "efficientvit_m5": PaperNumbers(params_m=12.4, flops_m=522, top1=77.1),
}

#: Our toy configurations (not in the paper): 32 px images, a 2-layer stem (8x8 tokens),
#: 4x4 windows. Override ``in_chans`` / ``num_classes`` / ``attention`` as needed.
TOY_VARIANTS: dict[str, EfficientViTConfig] = {
    "efficientvit_tiny": EfficientViTConfig(
        embed_dims=(32, 48, 64), depths=(1, 1, 1), num_heads=(2, 2, 2), window_size=4,
        kernels=(3, 3, 3, 3), img_size=32, num_classes=10, patch_embed_layers=2),
}


class EfficientViT(nn.Module):
    """EfficientViT classifier: patch embedding -> 3 stages -> pooled BN + Linear head."""

    def __init__(self, config: EfficientViTConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or EfficientViTConfig()
        self.patch_embed = OverlapPatchEmbed(config.in_chans, config.embed_dims[0],
                                             config.patch_embed_layers)
        # the window arithmetic of timm and the official code (img_size // 16 for M0-M5), not
        # the conv arithmetic: they differ for sizes that are not multiples of 16
        resolution = config.img_size // 2**config.patch_embed_layers
        stages = []
        in_dim = config.embed_dims[0]
        for i, (dim, depth, heads) in enumerate(
                zip(config.embed_dims, config.depths, config.num_heads, strict=True)):
            stage = EfficientViTStage(
                in_dim, dim, depth, config.key_dim, heads, resolution, config.window_size,
                config.kernels, config.attention, downsample=i > 0, mlp_ratio=config.mlp_ratio,
                drop_path=config.drop_path_rate)
            stages.append(stage)
            in_dim, resolution = dim, stage.resolution
        self.stages = nn.Sequential(*stages)
        self.num_features = config.embed_dims[-1]
        self.num_classes = config.num_classes
        self.head: nn.Module = (BatchNormLinear(self.num_features, config.num_classes,
                                                config.drop_rate)
                                if config.num_classes > 0 else nn.Identity())

    def forward_features(self, x: Tensor) -> Tensor:
        """Images [B, in_chans, H, W] -> last-stage feature map [B, C3, H/64, W/64] (M0-M5)."""
        return self.stages(self.patch_embed(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x.mean(dim=(2, 3))  # global average pool
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


# ----------------------------------------------------------------------------------------------
# Factories and timm weights
# ----------------------------------------------------------------------------------------------

_PRETRAINED_OVERRIDES = {"num_classes", "img_size", "in_chans", "drop_rate", "drop_path_rate"}


def create_model(name: str, pretrained: bool = False, checkpoint_file: str | Path | None = None,
                 **overrides: Any) -> EfficientViT:
    """Build a named variant (``efficientvit_m0`` ... ``efficientvit_m5``, ``efficientvit_tiny``).

    ``overrides`` replace fields of the variant's :class:`EfficientViTConfig`. With
    ``pretrained=True`` the ImageNet weights come through timm (``efficientvit_mX.r224_in1k``
    from the Hugging Face hub, or ``checkpoint_file`` when given: a timm/HF checkpoint in
    safetensors or torch format) and are loaded into our model.
    """
    configs = {**VARIANTS, **TOY_VARIANTS}
    if name not in configs:
        raise ValueError(f"unknown EfficientViT variant {name!r}; valid names: "
                         f"{', '.join(configs)}")
    fields = {f.name for f in dataclasses.fields(EfficientViTConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown EfficientViTConfig field(s) {sorted(unknown)}; "
                         f"valid: {sorted(fields)}")
    config = dataclasses.replace(configs[name], **overrides)
    model = EfficientViT(config)
    if pretrained:
        if name not in VARIANTS:
            raise ValueError(f"no pretrained weights for {name!r}; pretrained variants: "
                             f"{', '.join(VARIANTS)}")
        fixed = set(overrides) - _PRETRAINED_OVERRIDES
        if fixed:
            raise ValueError(f"pretrained=True cannot change the architecture ({sorted(fixed)}); "
                             f"allowed overrides: {sorted(_PRETRAINED_OVERRIDES)}")
        load_timm_state_dict(model, _timm_pretrained_state_dict(name, config, checkpoint_file))
    return model


def _timm_pretrained_state_dict(name: str, config: EfficientViTConfig,
                                checkpoint_file: str | Path | None) -> dict[str, Tensor]:
    import timm

    tag = f"{name}.r224_in1k"
    overlay = None
    if checkpoint_file is not None:
        path = Path(checkpoint_file)
        # read and check the file ourselves first: timm's own errors say little (an empty
        # AssertionError from its bias resize when the weights are another variant's)
        check_timm_checkpoint(read_checkpoint(path), name, source=str(path))
        overlay = dict(file=str(path))
    try:
        timm_model = timm.create_model(
            tag, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=config.num_classes,
            in_chans=config.in_chans, img_size=config.img_size, drop_rate=config.drop_rate)
    except Exception as err:  # network errors, corrupt files, mismatched tensors, ...
        if checkpoint_file is not None:
            raise CheckpointError(
                f"could not load checkpoint_file {str(checkpoint_file)!r} as {tag} "
                f"({type(err).__name__}: {err}). Is it a complete timm checkpoint of {name}?"
            ) from err
        raise DataUnavailableError(
            f"could not download pretrained weights for {name} (offline?) "
            f"({type(err).__name__}: {err}). Download `{tag}` from the Hugging Face hub "
            f"(timm/{tag}, model.safetensors; see data/manifests/"
            f"{name.replace('_', '-')}-in1k.yaml) and pass checkpoint_file=PATH."
        ) from err
    state_dict = timm_model.state_dict()
    if checkpoint_file is None:
        check_timm_checkpoint(state_dict, name, source=f"the hub's {tag}")
    return state_dict


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a checkpoint file: safetensors, or a torch file read with
    ``weights_only=True`` (a ``{"model": state_dict}`` or ``{"state_dict": ...}`` wrapper is
    unwrapped). Every problem is a :class:`CheckpointError` naming the file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint_file {str(path)!r} is a directory, not a file: pass "
                              "the checkpoint inside it (e.g. model.safetensors)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint_file {str(path)!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(8)
    is_zip_or_pickle = head[:2] == b"PK" or head[:1] == b"\x80"
    try:
        if is_zip_or_pickle:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
        else:
            from safetensors.torch import load_file

            tensors = load_file(str(path))
    except Exception as err:  # safetensors/torch raise assorted types on a bad file
        raise CheckpointError(f"could not read checkpoint_file {str(path)!r}: corrupt, "
                              f"truncated or not a checkpoint ({type(err).__name__}: {err})"
                              ) from err
    for key in ("model", "state_dict"):
        if isinstance(tensors, dict) and isinstance(tensors.get(key), dict):
            tensors = tensors[key]
    if not isinstance(tensors, dict) or not all(isinstance(v, Tensor) for v in tensors.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    return dict(tensors)


def _architecture_shapes(state_dict: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    """Shapes that define the architecture: not the classifier (its width is the number of
    classes) and not the attention biases (their size follows the image size)."""
    return {k: tuple(v.shape) for k, v in state_dict.items()
            if not k.startswith("head.") and "attention_bias" not in k}


@functools.cache
def _variant_shapes(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost worth keeping
        reference = EfficientViT(dataclasses.replace(VARIANTS[name], num_classes=0))
    return _architecture_shapes(reference.state_dict())


def identify_variant(timm_state_dict: Mapping[str, Tensor],
                     first: str | None = None) -> str | None:
    """Which of M0-M5 a timm ``efficientvit_m*`` state dict belongs to (None: none of them).
    ``first`` is tried before the others (the variant the caller expects)."""
    shapes = _architecture_shapes(convert_timm_state_dict(timm_state_dict))
    order = ([first] if first in VARIANTS else []) + [n for n in VARIANTS if n != first]
    return next((name for name in order if _variant_shapes(name) == shapes), None)


def _variant_label(name: str) -> str:
    return name.replace("efficientvit_", "").upper() if name.startswith("efficientvit_m") else name


def check_timm_checkpoint(timm_state_dict: Mapping[str, Tensor], name: str,
                          source: str = "the checkpoint") -> None:
    """Refuse weights that are not finite or not of variant ``name``, with a message that says
    which variant they are."""
    for key, value in timm_state_dict.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{source}: tensor {key!r} holds NaN or inf values; the "
                                  "file is corrupt or from a diverged run")
    if name not in VARIANTS:
        return
    found = identify_variant(timm_state_dict, first=name)
    if found is None:
        raise CheckpointError(f"{source} is not an EfficientViT M0-M5 checkpoint in timm's "
                              f"names (its tensors fit none of the variants); expected "
                              f"{_variant_label(name)}")
    if found != name:
        raise CheckpointError(f"{source} holds weights of {_variant_label(found)} given to "
                              f"{_variant_label(name)}: use create_model({found!r}, ...) or "
                              f"the {_variant_label(name)} checkpoint")


def _factory(name: str) -> Callable[..., EfficientViT]:
    def factory(pretrained: bool = False, **overrides: Any) -> EfficientViT:
        return create_model(name, pretrained=pretrained, **overrides)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"EfficientViT-{name[-2:].upper()}: ``create_model({name!r}, ...)``."
    return factory


efficientvit_m0 = _factory("efficientvit_m0")
efficientvit_m1 = _factory("efficientvit_m1")
efficientvit_m2 = _factory("efficientvit_m2")
efficientvit_m3 = _factory("efficientvit_m3")
efficientvit_m4 = _factory("efficientvit_m4")
efficientvit_m5 = _factory("efficientvit_m5")

# timm key -> our key. timm wraps every residual branch in ``ResidualDrop(m)``; we add residuals
# in ``forward`` and name the branches after the paper.
_TIMM_KEY_RULES: list[tuple[str, str | Callable[[re.Match[str]], str]]] = [
    (r"^patch_embed\.conv(\d)\.", lambda m: f"patch_embed.convs.{int(m.group(1)) - 1}."),
    (r"\.downsample\.res1\.0\.m\.", ".downsample.token_interaction0."),
    (r"\.downsample\.res1\.1\.m\.", ".downsample.ffn0."),
    (r"\.downsample\.res2\.0\.m\.", ".downsample.token_interaction1."),
    (r"\.downsample\.res2\.1\.m\.", ".downsample.ffn1."),
    (r"\.patchmerge\.conv1\.", ".patch_merging.expand."),
    (r"\.patchmerge\.conv2\.", ".patch_merging.depthwise."),
    (r"\.patchmerge\.se\.", ".patch_merging.squeeze_excite."),
    (r"\.patchmerge\.conv3\.", ".patch_merging.project."),
    (r"\.dw([01])\.m\.", r".token_interaction\1."),
    (r"\.ffn([01])\.m\.", r".ffn\1."),
    (r"\.mixer\.m\.attn\.", ".mixer.attention."),
    (r"\.pw([12])\.", r".pointwise\1."),
    (r"\.qkvs\.", ".qkv_projections."),
    (r"\.dws\.", ".query_convs."),
    (r"\.proj\.1\.", ".proj."),
]


def convert_timm_state_dict(timm_state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename the keys of a timm ``efficientvit_m*`` state dict to ours.

    Drops ``attention_bias_idxs`` (a derived buffer that older timm / official checkpoints
    store).
    """
    out = {}
    for key, value in timm_state_dict.items():
        if key.endswith("attention_bias_idxs"):
            continue
        for pattern, replacement in _TIMM_KEY_RULES:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


def load_timm_state_dict(model: EfficientViT, timm_state_dict: Mapping[str, Tensor],
                         strict: bool = True) -> EfficientViT:
    """Load timm ``efficientvit_m*`` weights into our model (in place; returns the model)."""
    state_dict = convert_timm_state_dict(timm_state_dict)
    try:
        model.load_state_dict(state_dict, strict=strict)
    except RuntimeError as err:
        found = identify_variant(timm_state_dict)
        arch = ("embed_dims", "depths", "num_heads", "kernels", "key_dim", "attention")
        mine = next((n for n, c in VARIANTS.items()
                     if all(getattr(c, f) == getattr(model.config, f) for f in arch)), None)
        what = (f"weights of {_variant_label(found)} given to {_variant_label(mine)}: "
                if found and mine and found != mine else "")
        raise CheckpointError(f"timm state dict does not fit this EfficientViT: {what}"
                              f"({model.config}): {err}") from err
    return model


# ----------------------------------------------------------------------------------------------
# Speed protocol and counting
# ----------------------------------------------------------------------------------------------


def fold_batchnorm(model: nn.Module, example: Tensor | None = None) -> nn.Module:
    """A copy of ``model`` in eval mode with every conv + BN and BN + Linear folded into one
    layer (the paper's speed protocol, ``replace_batchnorm`` in the official code).

    The input model is left untouched. Modules with a ``fuse()`` method returning the folded
    layer (ours, and timm's ``ConvNorm`` / ``NormLinear``) are folded by it. With an
    ``example`` input, every remaining BatchNorm2d fed directly by a Conv2d is folded too
    (found by running ``example`` once): that is how the baselines (timm's MobileNetV3 and
    MobileViT, whose BN sits in a ``BatchNormAct2d`` with its activation) get the same
    treatment. The copy is for inference only (dropout is gone, BN statistics are baked in).
    """
    folded = copy.deepcopy(model).eval()

    def fold_children(module: nn.Module) -> None:
        for name, child in module.named_children():
            if callable(getattr(child, "fuse", None)):
                setattr(module, name, child.fuse())
            else:
                fold_children(child)

    fold_children(folded)
    if example is not None:
        _fold_traced_conv_bn(folded, example)
    return folded


def _fold_traced_conv_bn(model: nn.Module, example: Tensor) -> None:
    """Fold each BatchNorm2d whose input is the output of the Conv2d run just before it."""
    modules = dict(model.named_modules())
    last: dict[str, Any] = {"conv": None, "out": None}
    pairs: list[tuple[str, str]] = []

    def conv_hook(name: str):
        def hook(_module, _inputs, output):
            last["conv"], last["out"] = name, output
        return hook

    def bn_hook(name: str):
        def hook(_module, inputs):
            if last["out"] is not None and inputs[0] is last["out"]:
                pairs.append((last["conv"], name))
        return hook

    handles = []
    for name, module in modules.items():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook(name)))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(bn_hook(name)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    used = [conv for conv, _ in pairs]
    for conv_name, bn_name in pairs:
        if used.count(conv_name) > 1:  # one conv feeding two BNs: leave both alone
            continue
        conv, bn = modules[conv_name], modules[bn_name]
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new_bias = (bias - bn.running_mean) * scale + bn.bias
            conv.bias = nn.Parameter(new_bias)
        # what is left of the BN: nothing, or the activation (and dropout) of BatchNormAct2d
        rest = [m for attr in ("drop", "act") if isinstance(m := getattr(bn, attr, None),
                                                              nn.Module)]
        replacement = nn.Sequential(*rest) if rest else nn.Identity()
        parent_name, _, attr = bn_name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, replacement)


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BN statistics not included)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, img_size: int = 224, in_chans: int = 3) -> int:
    """Multiply-accumulates of one forward pass on one ``in_chans`` x img_size x img_size image.

    The paper's "FLOPs" column (like fvcore, which the official code uses) counts one
    multiply-add as one FLOP; torch's ``FlopCounterMode`` counts it as two, so we halve its
    total. Only convolutions and matrix products are counted (BN, ReLU, softmax are not).
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, in_chans, img_size, img_size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


# ----------------------------------------------------------------------------------------------
# Attention maps and head redundancy (the paper's motivation, Sec. 2.3 / Fig. 3)
# ----------------------------------------------------------------------------------------------


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Collect every head's softmax attention map while the block runs.

    Yields a dict, filled during forward passes, from the attention module's name (e.g.
    ``stages.0.blocks.0.mixer.attention``) to a detached tensor [B * windows, heads, N, N]
    (N = window_size**2 tokens; windows of one image are consecutive, row-major). Several
    forward passes inside the block concatenate along the first dimension. Works with
    ``attention="cascaded"`` and ``"mhsa"``.
    """
    maps: dict[str, Tensor] = {}
    mixers = [(name, module) for name, module in model.named_modules()
              if isinstance(module, (CascadedGroupAttention, MultiHeadSelfAttention))]
    if not mixers:
        raise ValueError("model has no CascadedGroupAttention or MultiHeadSelfAttention layer")

    def sink_for(name: str) -> Callable[[Tensor], None]:
        def sink(attn: Tensor) -> None:
            attn = attn.detach()
            maps[name] = torch.cat([maps[name], attn]) if name in maps else attn

        return sink

    for name, module in mixers:
        module.attention_sink = sink_for(name)
    try:
        yield maps
    finally:
        for _, module in mixers:
            module.attention_sink = None


def head_redundancy(attn_maps: Mapping[str, Tensor] | Sequence[Tensor] | Tensor,
                    reduction: Literal["max", "mean"] = "max") -> float:
    """How similar the attention maps of different heads are (1.0: all heads identical).

    For each layer's maps [B, heads, N, N], flatten each head's map per sample and take the
    cosine similarity of every pair of heads. Then, per sample:

    - ``reduction="max"``: each head's *maximum* similarity to the other heads, averaged over
      heads -- the measure of the paper's Fig. 3 ("average maximum cosine similarity of each
      head", in our reading of the figure [recalled, not re-verified against the PDF]);
    - ``reduction="mean"``: the mean over all pairs of heads.

    Both are averaged over samples, then over layers (layers with one head are skipped).
    "max" is never below "mean"; they are equal for two heads.
    """
    if reduction not in ("max", "mean"):
        raise ValueError(f"reduction must be 'max' or 'mean', got {reduction!r}")
    if isinstance(attn_maps, Tensor):
        layers: list[Tensor] = [attn_maps]
    elif isinstance(attn_maps, Mapping):
        layers = list(attn_maps.values())
    else:
        layers = list(attn_maps)
    per_layer = []
    for maps in layers:
        if maps.dim() != 4:
            raise ValueError(f"attention maps must be [B, heads, N, N], got {tuple(maps.shape)}")
        batch, heads = maps.shape[:2]
        if heads < 2:
            continue
        flat = F.normalize(maps.reshape(batch, heads, -1).double(), dim=-1)
        cosine = flat @ flat.transpose(1, 2)  # [B, heads, heads]
        if reduction == "mean":
            rows, cols = torch.triu_indices(heads, heads, offset=1)
            per_layer.append(cosine[:, rows, cols].mean())
        else:
            others = cosine.masked_fill(torch.eye(heads, dtype=torch.bool), -math.inf)
            per_layer.append(others.amax(dim=-1).mean())
    if not per_layer:
        raise ValueError("head_redundancy needs at least one layer with two or more heads")
    return float(torch.stack(per_layer).mean())
