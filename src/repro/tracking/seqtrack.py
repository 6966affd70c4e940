"""SeqTrack: visual object tracking as sequence-to-sequence generation of box tokens.

Paper: Xin Chen, Houwen Peng, Dong Wang, Huchuan Lu, Han Hu. "SeqTrack: Sequence to Sequence
Learning for Visual Object Tracking", CVPR 2023, https://arxiv.org/abs/2304.14394. Official
code: microsoft/VideoX, ``SeqTrack/lib/models/seqtrack`` (seqtrack.md Sec. 5).

What is implemented, in the paper's words (Sec. 3, Fig. 2):

- Encoder (``SeqTrackEncoder``): a plain ViT over the concatenated template and search patch
  tokens; one shared patch embedding, separate learned position embeddings for the search grid
  and the template grid (shared by all templates); search tokens first; blocks from timm.
- Decoder (``SeqTrackDecoder``): DETR-style post-norm layers with a causal self-attention mask
  and cross-attention to the *search* tokens only (projected to the decoder width, plus a 1-D
  position table initialised to sinusoids and trained); token embedding -> LayerNorm ->
  dropout; a learned query position table added to the queries and keys of both attentions.
- Vocabulary head: MLP d -> d -> d -> bins + 2.
- Tokens (``quantize``, ``dequantize``, ``build_sequences``): a box in search-crop coordinates,
  normalised to [0, 1], as (cx, cy, w, h), each coordinate quantised into ``bins`` integers;
  END = bins, START = bins + 1 (the code's order). Teacher forcing: input [START, cx, cy, w, h],
  target [cx, cy, w, h, END].
- Loss (``token_loss``): cross-entropy over the five targets with class weight 0.01 on the two
  special tokens (PyTorch's weighted mean).
- Inference (``greedy_decode``, ``SeqTrackTracker``): the encoder once per frame, four greedy
  steps from [START]; the argmax over the coordinate tokens only (a special token has no box
  meaning), with the Hanning window ``np.hanning(bins)`` on the cx and cy steps when
  ``window=True``; a step's confidence is its (windowed) probability. Online template update
  (optional, ``num_templates=2``): every ``update_interval`` frames, if 10 * sum of the four
  confidences > ``update_threshold``, the second template is re-cut at the current box.

Departures (tiny CPU scale, seqtrack.md "Measured feasibility"):

- Toy sizes: 64-px search, 32-px template (the paper uses equal sizes, 256 or 384), patch 8,
  encoder 4 layers x 64, decoder 2 layers x 64, 64-256 bins instead of 4000.
- Quantisation rounds by default (``mode="round"``); the released code truncates
  (``mode="truncate"``), which lowers every coordinate by up to one bin.
- No KV cache in decoding: each of the four steps re-runs the decoder on the prefix (as the
  released code does); the encoder dominates anyway.
- No MAE pre-training; trained from scratch on generated sequences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.errors import CheckpointError, ParameterError

from .data import crop, crop_side, normalize
from .runner import CropTracker, frames_to_tensor

__all__ = ["SeqTrackConfig", "SeqTrackEncoder", "DecoderLayer", "SeqTrackDecoder",
           "VocabHead", "SeqTrack", "quantize", "dequantize", "build_sequences",
           "token_loss", "greedy_decode", "hanning_window", "SeqTrackTracker",
           "quantization_iou", "box_iou_cxcywh", "create_model", "TOY_VARIANTS", "PAPER_VARIANTS",
           "convert_official_state_dict", "train", "count_parameters"]


@dataclass
class SeqTrackConfig:
    search_size: int = 64
    template_size: int = 32
    patch_size: int = 8
    embed_dim: int = 64
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 2.0
    decoder_dim: int = 64
    decoder_layers: int = 2
    decoder_heads: int = 4
    decoder_ffn: int = 256
    dropout: float = 0.1
    bins: int = 64
    num_templates: int = 1

    def __post_init__(self) -> None:
        for name in ("search_size", "template_size"):
            if getattr(self, name) % self.patch_size:
                raise ParameterError(f"{name}={getattr(self, name)} must be a multiple of "
                                     f"patch_size={self.patch_size}")
        if self.bins < 2:
            raise ParameterError(f"bins must be >= 2, got {self.bins}")
        if self.num_templates not in (1, 2):
            raise ParameterError("num_templates must be 1 (fixed) or 2 (with online update)")

    @property
    def end_token(self) -> int:
        return self.bins

    @property
    def start_token(self) -> int:
        return self.bins + 1

    @property
    def vocab_size(self) -> int:
        return self.bins + 2


#: The paper's variants (seqtrack.md Sec. 5.1/5.4): ViT-B/L encoders, equal template and
#: search sizes, decoder 2 x 256 with FFN 1024, 4000 bins, two templates.
PAPER_VARIANTS: dict[str, dict] = {
    "seqtrack_b256": dict(search_size=256, template_size=256, patch_size=16, embed_dim=768,
                          depth=12, num_heads=12, mlp_ratio=4.0),
    "seqtrack_b384": dict(search_size=384, template_size=384, patch_size=16, embed_dim=768,
                          depth=12, num_heads=12, mlp_ratio=4.0),
    "seqtrack_l256": dict(search_size=256, template_size=256, patch_size=16, embed_dim=1024,
                          depth=24, num_heads=16, mlp_ratio=4.0),
    "seqtrack_l384": dict(search_size=384, template_size=384, patch_size=16, embed_dim=1024,
                          depth=24, num_heads=16, mlp_ratio=4.0),
}
for _v in PAPER_VARIANTS.values():
    _v.update(decoder_dim=256, decoder_layers=2, decoder_heads=8, decoder_ffn=1024, bins=4000,
              num_templates=2)

TOY_VARIANTS: dict[str, dict] = {"seqtrack_toy": dict()}


# --------------------------------------------------------------------------- tokens
def quantize(values: Tensor, bins: int, mode: str = "round") -> Tensor:
    """Normalised coordinates in [0, 1] -> integers 0..bins-1 (clamped first)."""
    scaled = values.clamp(0, 1) * (bins - 1)
    if mode == "round":
        return scaled.round().long()
    if mode == "truncate":
        return scaled.long()  # the released code's int(): toward zero
    raise ParameterError(f"mode must be 'round' or 'truncate', got {mode!r}")


def dequantize(tokens: Tensor, bins: int) -> Tensor:
    """q / (bins - 1), the released code's rule (no half-bin offset)."""
    return tokens.float() / (bins - 1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    return torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)


def build_sequences(target_xyxy: Tensor, bins: int, mode: str = "round"
                    ) -> tuple[Tensor, Tensor]:
    """Teacher-forcing input [START, cx, cy, w, h] and target [cx, cy, w, h, END] from
    normalised (x1, y1, x2, y2) boxes (clamped to [0, 1] first, as in the code)."""
    coords = quantize(xyxy_to_cxcywh(target_xyxy.clamp(0, 1)), bins, mode)
    b = coords.shape[0]
    start = torch.full((b, 1), bins + 1, dtype=torch.long)
    end = torch.full((b, 1), bins, dtype=torch.long)
    return torch.cat([start, coords], 1), torch.cat([coords, end], 1)


def token_loss(logits: Tensor, targets: Tensor, bins: int, special_weight: float = 0.01
               ) -> Tensor:
    """Weighted token cross-entropy: weight 1 on coordinates, ``special_weight`` on START/END
    (PyTorch's weighted mean, normalised by the sum of the targets' weights)."""
    weight = torch.ones(bins + 2, device=logits.device)
    weight[bins:] = special_weight
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), weight=weight)


def box_iou_cxcywh(a: Tensor, b: Tensor) -> Tensor:
    """IoU of matching (cx, cy, w, h) rows."""
    def xyxy(t: Tensor) -> Tensor:
        return torch.cat([t[:, :2] - t[:, 2:] / 2, t[:, :2] + t[:, 2:] / 2], 1)

    a, b = xyxy(a), xyxy(b)
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = ((a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
             + (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1) - inter)
    return inter / union.clamp(min=1e-12)


def quantization_iou(boxes_cxcywh: Tensor, bins: int, mode: str = "round") -> Tensor:
    """IoU between normalised boxes and their quantise-dequantise round trip: the best a
    SeqTrack with ``bins`` bins can do on these boxes (its ceiling)."""
    rec = dequantize(quantize(boxes_cxcywh, bins, mode), bins)
    return box_iou_cxcywh(boxes_cxcywh.clamp(0, 1), rec)


def hanning_window(bins: int) -> Tensor:
    """``np.hanning(bins)``, the released code's window (zero at both ends)."""
    return torch.from_numpy(np.hanning(bins)).float()


# --------------------------------------------------------------------------- model
def sinusoid_table(length: int, dim: int) -> Tensor:
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)
    return table


class SeqTrackEncoder(nn.Module):
    """ViT over [search tokens; template tokens ...] with separate learned position tables."""

    def __init__(self, cfg: SeqTrackConfig) -> None:
        super().__init__()
        from timm.layers import trunc_normal_
        from timm.models.vision_transformer import Block

        self.cfg = cfg
        self.patch_embed = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, cfg.patch_size)
        n_x = (cfg.search_size // cfg.patch_size) ** 2
        n_z = (cfg.template_size // cfg.patch_size) ** 2
        self.pos_search = nn.Parameter(torch.zeros(1, n_x, cfg.embed_dim))
        self.pos_template = nn.Parameter(torch.zeros(1, n_z, cfg.embed_dim))
        trunc_normal_(self.pos_search, std=0.02)
        trunc_normal_(self.pos_template, std=0.02)
        self.blocks = nn.Sequential(*[Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio,
                                            qkv_bias=True) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.num_search = n_x

    def embed(self, image: Tensor) -> Tensor:
        return self.patch_embed(image).flatten(2).transpose(1, 2)

    def forward(self, templates: list[Tensor], search: Tensor) -> Tensor:
        """The search tokens after the joint encoder (the decoder's memory), (B, N_x, C)."""
        tokens = [self.embed(search) + self.pos_search]
        tokens += [self.embed(t) + self.pos_template for t in templates]
        x = self.norm(self.blocks(torch.cat(tokens, 1)))
        return x[:, :self.num_search]


class DecoderLayer(nn.Module):
    """DETR's post-norm decoder layer: positions added to the queries/keys, not the values."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn, dim))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor, query_pos: Tensor, memory_pos: Tensor,
                mask: Tensor) -> Tensor:
        q = k = tgt + query_pos
        tgt = self.norm1(tgt + self.drop(self.self_attn(q, k, tgt, attn_mask=mask,
                                                        need_weights=False)[0]))
        tgt = self.norm2(tgt + self.drop(self.cross_attn(tgt + query_pos, memory + memory_pos,
                                                         memory, need_weights=False)[0]))
        return self.norm3(tgt + self.drop(self.ffn(tgt)))


class SeqTrackDecoder(nn.Module):
    def __init__(self, cfg: SeqTrackConfig, memory_length: int) -> None:
        super().__init__()
        d = cfg.decoder_dim
        self.token_embed = nn.Embedding(cfg.vocab_size, d)
        self.embed_norm = nn.LayerNorm(d)
        self.embed_drop = nn.Dropout(cfg.dropout)
        self.query_pos = nn.Parameter(torch.zeros(1, 5, d))
        nn.init.normal_(self.query_pos, std=0.02)
        self.memory_pos = nn.Parameter(sinusoid_table(memory_length, d)[None])  # trainable
        self.layers = nn.ModuleList([DecoderLayer(d, cfg.decoder_heads, cfg.decoder_ffn,
                                                  cfg.dropout)
                                     for _ in range(cfg.decoder_layers)])

    def forward(self, tokens: Tensor, memory: Tensor) -> Tensor:
        n = tokens.shape[1]
        mask = torch.triu(torch.full((n, n), float("-inf"), device=tokens.device), 1)
        x = self.embed_drop(self.embed_norm(self.token_embed(tokens)))
        for layer in self.layers:
            x = layer(x, memory, self.query_pos[:, :n], self.memory_pos, mask)
        return x


class VocabHead(nn.Sequential):
    def __init__(self, dim: int, vocab: int) -> None:
        super().__init__(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(),
                         nn.Linear(dim, vocab))


class SeqTrack(nn.Module):
    def __init__(self, cfg: SeqTrackConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or SeqTrackConfig()
        self.encoder = SeqTrackEncoder(cfg)
        self.bottleneck = nn.Linear(cfg.embed_dim, cfg.decoder_dim)
        self.decoder = SeqTrackDecoder(cfg, self.encoder.num_search)
        self.head = VocabHead(cfg.decoder_dim, cfg.vocab_size)

    def encode(self, templates: list[Tensor], search: Tensor) -> Tensor:
        if len(templates) != self.cfg.num_templates:
            raise ParameterError(f"expected {self.cfg.num_templates} template(s), got "
                                 f"{len(templates)}")
        return self.bottleneck(self.encoder(templates, search))

    def decode(self, tokens: Tensor, memory: Tensor) -> Tensor:
        """Logits over the vocabulary at every input position, (B, L, bins + 2)."""
        return self.head(self.decoder(tokens, memory))

    def forward(self, templates: list[Tensor], search: Tensor, tokens: Tensor) -> Tensor:
        return self.decode(tokens, self.encode(templates, search))


def create_model(name: str = "seqtrack_toy", **overrides) -> SeqTrack:
    table = {**TOY_VARIANTS, **PAPER_VARIANTS}
    if name not in table:
        raise ParameterError(f"unknown SeqTrack variant {name!r}; known: {', '.join(table)}")
    unknown = set(overrides) - set(SeqTrackConfig.__dataclass_fields__)
    if unknown:
        raise ParameterError(f"unknown SeqTrackConfig field(s) {sorted(unknown)}")
    return SeqTrack(SeqTrackConfig(**{**table[name], **overrides}))


# --------------------------------------------------------------------------- inference
@torch.no_grad()
def greedy_decode(model: SeqTrack, templates: list[Tensor], search: Tensor, *,
                  window: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Four greedy steps from [START]. Returns boxes (B, 4) (cx, cy, w, h) normalised, the
    chosen tokens (B, 4) and their (windowed) probabilities (B, 4)."""
    bins = model.cfg.bins
    memory = model.encode(templates, search)
    b = search.shape[0]
    tokens = torch.full((b, 1), model.cfg.start_token, dtype=torch.long)
    hann = hanning_window(bins) if window else None
    confidences = []
    for step in range(4):
        probs = model.decode(tokens, memory)[:, -1].softmax(-1)[:, :bins]
        if hann is not None and step < 2:  # cx and cy only
            probs = probs * hann
        conf, choice = probs.max(-1)
        confidences.append(conf)
        tokens = torch.cat([tokens, choice[:, None]], 1)
    chosen = tokens[:, 1:]
    return dequantize(chosen, bins), chosen, torch.stack(confidences, 1)


class SeqTrackTracker(CropTracker):
    """SeqTrack's test loop: search crop around the previous box, greedy decoding with the
    Hanning window, optional online update of the second template."""

    def __init__(self, model: SeqTrack, *, window: bool = True, update_interval: int = 25,
                 update_threshold: float = 0.6, name: str | None = None) -> None:
        cfg = model.cfg
        super().__init__(lambda z, x: x, name=name or ("SeqTrack" + (" + window" if window
                                                                      else "")),
                         template_size=cfg.template_size, search_size=cfg.search_size)
        self.model = model.eval()
        self.window = window
        self.update_interval, self.update_threshold = update_interval, update_threshold

    def init_batch(self, frames: np.ndarray, boxes: np.ndarray) -> None:
        super().init_batch(frames, boxes)
        self.templates = [self.template.clone() for _ in range(self.model.cfg.num_templates)]
        self.frame_index = 0

    @torch.inference_mode()
    def update_batch(self, frames: np.ndarray) -> np.ndarray:
        search, centers, sides, hw = self.search_crops(frames)
        pred, _, conf = greedy_decode(self.model, self.templates, search, window=self.window)
        out = self.map_back(pred, centers, sides, hw)
        self.frame_index += 1
        if self.model.cfg.num_templates == 2 and self.frame_index % self.update_interval == 0:
            score = 10 * conf.sum(1)  # the released code's un-normalised confidence
            keep = score > self.update_threshold
            if keep.any():
                images = normalize(frames_to_tensor(frames))
                c = self.boxes[:, :2] + self.boxes[:, 2:] / 2
                fresh = crop(images, c, crop_side(self.boxes, self.template_factor),
                             self.template_size)
                self.templates[1] = torch.where(keep[:, None, None, None], fresh,
                                                self.templates[1])
        return out


def train(model: SeqTrack, bank, frames: Tensor | None = None, *, steps: int = 300,
          batch_size: int = 32, lr: float = 3e-3, weight_decay: float = 1e-4,
          warmup_steps: int = 30, grad_clip: float = 1.0, center_jitter: float = 2.5,
          scale_jitter: float = 0.25, mode: str = "round",
          special_weight: float = 0.01, seed: int = 0, desc: str = "SeqTrack"):
    """Teacher-forced token cross-entropy on pairs from ``bank`` with ``repro.train.fit``."""
    from repro.train import TrainConfig, fit

    from .data import sample_pairs

    cfg = model.cfg
    generator = torch.Generator().manual_seed(seed)

    def batch_fn(step: int):
        p = sample_pairs(bank, batch_size, generator, template_size=cfg.template_size,
                         search_size=cfg.search_size, center_jitter=center_jitter,
                         scale_jitter=scale_jitter, frames=frames)
        inputs, targets = build_sequences(p.target, cfg.bins, mode)
        return p.template, p.search, inputs, targets

    def loss_fn(m: SeqTrack, batch):
        template, search, inputs, targets = batch
        logits = m([template] * cfg.num_templates, search, inputs)
        return token_loss(logits, targets, cfg.bins, special_weight)

    config = TrainConfig(steps=steps, lr=lr, weight_decay=weight_decay,
                         warmup_steps=warmup_steps, grad_clip=grad_clip, desc=desc)
    history = fit(model, loss_fn, batch_fn, config)
    model.eval()
    return history


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def convert_official_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map a released SeqTrack checkpoint (microsoft/VideoX, ``net`` entry) to our names.

    Not implemented: the released encoder is a timm-0.4-era ViT (``encoder.body.blocks.{i}``,
    ``pos_embed_x``/``pos_embed_z``), which maps onto our ``SeqTrackEncoder`` by renaming, but
    its decoder keeps DETR's separate ``self_attn``/``multihead_attn`` and ``linear1``/``linear2``
    names and its query/memory position tables at other shapes; without the files (CI is
    offline, see data/manifests/seqtrack-b256-released.yaml) the map cannot be tested, so it
    is not shipped untested.
    """
    raise CheckpointError(
        "loading released SeqTrack weights is not implemented yet; see "
        "convert_official_state_dict's docstring and data/manifests/seqtrack-b256-released.yaml")
