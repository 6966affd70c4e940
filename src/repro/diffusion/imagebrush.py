"""ImageBrush: exemplar-based image manipulation as diffusion inpainting of a 2x2 grid.

Paper: Yasheng Sun, Yifan Yang, Houwen Peng, Yifei Shen, Yuqing Yang, Han Hu, Lili Qiu, Hideki
Koike. "ImageBrush: Learning Visual In-Context Instructions for Exemplar-Based Image
Manipulation", NeurIPS 2023, https://arxiv.org/abs/2308.00906. There is no public code or
checkpoint (checked 2026-12): this module is, as far as we know, the first open implementation.

What is implemented, in the paper's words (Sec. 3):

- *Progressive in-painting* (Sec. 3.1): the exemplar pair {E, E'}, the query I and a blank M
  are tiled into one grid [E, E'; I, M] (:func:`make_grid`, :func:`split_grid`,
  :func:`hole_mask`); a diffusion model recovers the bottom-right quadrant I'.
- The denoiser (Sec. 3.2): a UNet whose down and up blocks use *self-attention* over the whole
  grid (so one quadrant can look at another) and whose *middle block* alone cross-attends to
  the visual-prompt features; diffusers' ``UNet2DConditionModel`` with ``DownBlock2D`` /
  ``AttnDownBlock2D`` / ``UNetMidBlock2DCrossAttn`` / ``AttnUpBlock2D`` / ``UpBlock2D``
  (:class:`ImageBrush`).
- The *visual prompting encoder* (Sec. 3.2): a backbone shared by E, E' and I turns each into
  tokens, optional interest-region tokens e_b(Fourier(B)) are appended
  (:func:`fourier_features`, :class:`BoxEncoder`), and a bidirectional transformer e_p mixes
  them into the context f_c that the middle block attends to (:class:`VisualPromptEncoder`).
- Training (Sec. 3.1, L_simple): epsilon-prediction MSE, with the instruction dropped at the
  paper's rate of 5 % for classifier-free guidance (:func:`training_batch`,
  :func:`diffusion_loss`, :func:`train_imagebrush`, through :func:`repro.train.fit`).
- Sampling (Sec. 3.1): DDIM with classifier-free guidance on the visual prompt,
  eps = eps(x, empty) + w (eps(x, c) - eps(x, empty)), w = 7.5 in the paper (:func:`sample`).
- The full-scale path: Stable Diffusion's inpainting UNet and VAE through diffusers'
  ``StableDiffusionInpaintPipeline`` at the paper's 512x512 grid (four 256x256 cells), with the
  visual prompt features in place of the text embeddings (:func:`load_inpainting_pipeline`,
  :func:`inpaint_with_pipeline`). Without the weights on disk it stops with
  :class:`~repro.errors.DataUnavailableError` naming ``data/manifests/sd-inpainting.yaml``.

Choices the paper leaves open, and what we picked (spec Sec. 3.6):

1. *How the known quadrants enter.* Only the target quadrant is noised; E, E' and I are given
   clean in the other three quadrants of the UNet's input at every timestep, plus a mask
   channel marking the hole (in_channels = C + 1). The loss is the epsilon MSE over the hole
   only. (Alternatives: SD-inpainting's 9-channel concat of noisy grid + masked grid + mask, or
   RePaint-style replacement; the full-scale path uses SD's 9 channels, because that is what
   its weights expect.)
2. *What "dropping the instruction" drops.* Both the prompt encoder's features (replaced by a
   learned null context) and the exemplar quadrants of the grid (set to 0, mid grey). The
   paper only says the condition is dropped; dropping the features alone would leave the
   exemplar visible to the UNet's self-attention, so the "no instruction" baseline would still
   see the instruction.
3. *Pixel space at toy scale.* The toy model works on pixels in [-1, 1] (no VAE); the full
   scale uses SD's KL autoencoder as the paper does.
4. *Prompt-encoder backbone.* The paper uses EVA-02; the toy model uses a two-layer CNN shared
   by the three tiles, pooled to ``tokens_per_side``^2 tokens per tile, plus a learned
   embedding of the tile's role (E, E' or I) and of the token's position. I is included in
   e_p's input (the paper's v_p = {E, E', I}). e_p is torch's pre-norm
   ``TransformerEncoder`` (5 layers, width 768 at full scale; 2 layers, width 64 at toy scale).
5. *Boxes.* Off by default at toy scale (``use_boxes``); when on, a missing box is the whole
   image, as in the paper. Fourier features use frequencies 2^k pi, k < 8 (NeRF's).
6. *Noise schedule.* DDPM with 1,000 steps; the toy model uses the cosine schedule
   (``squaredcos_cap_v2``), which suits small pixel-space images better than SD's
   ``scaled_linear``; the full-scale path keeps the scheduler that ships with the weights.
7. *Tile order* is fixed ([E, E'; I, I'], query always bottom-left) in training and sampling.
8. *Prediction target.* The paper's L_simple predicts the noise (``prediction_type =
   "epsilon"``, the default). ``"sample"`` (predict the clean quadrant) and ``"v_prediction"``
   are options; the ci notebooks use ``"sample"``, which after a couple of hundred steps
   gives clean blobs where epsilon-prediction still leaves coloured noise in the 8x8 hole.
9. *UNet at full scale.* SD's inpainting UNet keeps its cross-attention in every block (the
   paper replaces it by self-attention outside the middle blocks and then fine-tunes; without
   ImageBrush's weights that surgery would leave untrained layers).
"""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.errors import DataUnavailableError, ParameterError

from .transforms import EditGrids, TilePool, check_transforms, sample_edit_grids, tile_pool

__all__ = [
    "ImageBrushConfig",
    "make_grid",
    "split_grid",
    "hole_mask",
    "fourier_features",
    "BoxEncoder",
    "VisualPromptEncoder",
    "ImageBrush",
    "build_scheduler",
    "training_batch",
    "diffusion_loss",
    "train_imagebrush",
    "trained_imagebrush",
    "sample",
    "to_model_range",
    "to_image_range",
    "SD_INPAINTING_MANIFEST",
    "EDIT_DATA_MANIFEST",
    "PAPER_SCALE",
    "check_edit_data",
    "training_data",
    "image_table",
    "load_inpainting_pipeline",
    "inpaint_with_pipeline",
]

SD_INPAINTING_MANIFEST = "sd-inpainting"
EDIT_DATA_MANIFEST = "instructpix2pix-clip-filtered"

# The paper's settings (Sec. 4.1 "Implementation details" and Sec. 3)
PAPER_SCALE: dict[str, Any] = {
    "cell_size": 256,  # four 256x256 cells -> a 512x512 grid
    "grid_size": 512,
    "batch_size": 288,
    "steps": 14_000,
    "lr": 1e-6,  # AdamW
    "gpus": "24 x V100-32G",
    "condition_dropout": 0.05,
    "guidance_scale": 7.5,
    "prompt_encoder_layers": 5,
    "prompt_encoder_width": 768,
}


# --------------------------------------------------------------------------- the grid
def make_grid(exemplar: Tensor, exemplar_edited: Tensor, query: Tensor,
              target: Tensor | None = None) -> Tensor:
    """Tile four ``(N, C, H, W)`` images into ``(N, C, 2H, 2W)``: [E, E'; I, I'].
    Without ``target`` the bottom-right quadrant is blank (zeros)."""
    if not (exemplar.shape == exemplar_edited.shape == query.shape):
        raise ParameterError(f"the three tiles must have one shape, got {tuple(exemplar.shape)},"
                             f" {tuple(exemplar_edited.shape)}, {tuple(query.shape)}")
    target = torch.zeros_like(query) if target is None else target
    top = torch.cat([exemplar, exemplar_edited], dim=-1)
    bottom = torch.cat([query, target], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def split_grid(grid: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The inverse of :func:`make_grid`: (E, E', I, I') of a ``(N, C, 2H, 2W)`` grid."""
    h, w = grid.shape[-2] // 2, grid.shape[-1] // 2
    if grid.shape[-2] != 2 * h or grid.shape[-1] != 2 * w:
        raise ParameterError(f"a grid has even height and width, got {tuple(grid.shape[-2:])}")
    return (grid[..., :h, :w], grid[..., :h, w:], grid[..., h:, :w], grid[..., h:, w:])


def hole_mask(tile_size: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(batch, 1, 2*tile, 2*tile)``: 1 on the bottom-right quadrant (the hole), 0 elsewhere."""
    mask = torch.zeros(batch, 1, 2 * tile_size, 2 * tile_size, dtype=dtype)
    mask[..., tile_size:, tile_size:] = 1.0
    return mask


def to_model_range(images: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1]."""
    return images * 2 - 1


def to_image_range(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] (clamped)."""
    return ((x + 1) / 2).clamp(0, 1)


# --------------------------------------------------------------------------- config
@dataclass
class ImageBrushConfig:
    """The toy ImageBrush: a pixel-space conditional UNet and a small visual prompt encoder."""

    tile_size: int = 8
    channels: int = 3
    block_out_channels: tuple[int, ...] = (16, 32)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    attention_head_dim: int = 16
    context_dim: int = 64  # width of e_p and of the middle block's cross-attention
    prompt_layers: int = 2
    prompt_heads: int = 4
    tokens_per_side: int = 2  # tokens per tile = tokens_per_side ** 2
    use_prompt_encoder: bool = True  # False: the "w/o cross-attention" ablation (Table 2)
    use_boxes: bool = False
    box_frequencies: int = 8
    condition_dropout: float = 0.05  # Sec. 3.1: drop the condition 5 % of the time
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"  # epsilon (the paper's L_simple) | v_prediction | sample

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(self.block_out_channels)
        levels = len(self.block_out_channels)
        if levels < 2:
            raise ParameterError("block_out_channels needs at least two levels (the second "
                                 "one carries the grid's self-attention)")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ParameterError(f"norm_num_groups={self.norm_num_groups} must divide every "
                                 f"entry of block_out_channels (not {bad}): GroupNorm needs it")
        if (2 * self.tile_size) % (2 ** (levels - 1)):
            raise ParameterError(f"a {2 * self.tile_size}-pixel grid cannot be halved "
                                 f"{levels - 1} times; change tile_size or the number of levels")
        if self.tile_size % self.tokens_per_side:
            raise ParameterError(f"tokens_per_side={self.tokens_per_side} must divide "
                                 f"tile_size={self.tile_size}")
        if self.context_dim % self.prompt_heads:
            raise ParameterError(f"prompt_heads={self.prompt_heads} must divide "
                                 f"context_dim={self.context_dim}")
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ParameterError(f"condition_dropout must be in [0, 1), got "
                                 f"{self.condition_dropout}")
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ParameterError(f"prediction_type must be epsilon, v_prediction or sample, "
                                 f"got {self.prediction_type!r}")
        if self.channels not in (1, 3):
            raise ParameterError(f"channels must be 1 or 3, got {self.channels}")

    @property
    def num_context_tokens(self) -> int:
        return 3 * self.tokens_per_side ** 2 + (1 if self.use_boxes else 0)


# --------------------------------------------------------------------------- prompt encoder
def fourier_features(boxes: Tensor, num_frequencies: int = 8) -> Tensor:
    """NeRF-style features of ``(..., 4)`` boxes [x_min, y_min, x_max, y_max] in [0, 1]:
    sin and cos of 2^k pi b for k < ``num_frequencies`` -> ``(..., 4 * 2 * num_frequencies)``."""
    freqs = (2.0 ** torch.arange(num_frequencies, dtype=boxes.dtype, device=boxes.device)) * math.pi
    angles = boxes[..., :, None] * freqs  # (..., 4, F)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class BoxEncoder(nn.Module):
    """e_b of the paper (as in GLIGEN): an MLP on the Fourier features of an interest box."""

    def __init__(self, context_dim: int, num_frequencies: int = 8) -> None:
        super().__init__()
        self.num_frequencies = num_frequencies
        self.mlp = nn.Sequential(nn.Linear(8 * num_frequencies, context_dim), nn.SiLU(),
                                 nn.Linear(context_dim, context_dim))

    def forward(self, boxes: Tensor) -> Tensor:
        return self.mlp(fourier_features(boxes, self.num_frequencies))


class VisualPromptEncoder(nn.Module):
    """Shared tile backbone e_v -> tokens of E, E', I (+ box token) -> transformer e_p -> f_c."""

    def __init__(self, config: ImageBrushConfig) -> None:
        super().__init__()
        c, d = config.channels, config.context_dim
        self.backbone = nn.Sequential(
            nn.Conv2d(c, d // 2, 3, padding=1), nn.GELU(),
            nn.Conv2d(d // 2, d, 3, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(config.tokens_per_side))
        n = config.tokens_per_side ** 2
        self.role_embedding = nn.Parameter(torch.zeros(3, 1, d))  # E, E', I
        self.position_embedding = nn.Parameter(torch.zeros(1, n, d))
        nn.init.normal_(self.role_embedding, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.02)
        self.box_encoder = BoxEncoder(d, config.box_frequencies) if config.use_boxes else None
        layer = nn.TransformerEncoderLayer(d, config.prompt_heads, dim_feedforward=2 * d,
                                           dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, config.prompt_layers,
                                                 enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def tile_tokens(self, tiles: Tensor) -> Tensor:
        """``(N, C, H, W)`` in [-1, 1] -> ``(N, tokens, context_dim)``."""
        return self.backbone(tiles).flatten(2).transpose(1, 2) + self.position_embedding

    def forward(self, exemplar: Tensor, exemplar_edited: Tensor, query: Tensor,
                boxes: Tensor | None = None) -> Tensor:
        tokens = [self.tile_tokens(t) + self.role_embedding[i]
                  for i, t in enumerate((exemplar, exemplar_edited, query))]
        if self.box_encoder is not None:
            if boxes is None:  # no user box: the whole image (Sec. 3.2)
                boxes = exemplar.new_tensor([0.0, 0.0, 1.0, 1.0]).expand(len(exemplar), 4)
            tokens.append(self.box_encoder(boxes)[:, None])
        return self.norm(self.transformer(torch.cat(tokens, dim=1)))


# --------------------------------------------------------------------------- the model
class ImageBrush(nn.Module):
    """Grid denoiser (diffusers ``UNet2DConditionModel``) + visual prompt encoder."""

    def __init__(self, config: ImageBrushConfig) -> None:
        super().__init__()
        from diffusers import UNet2DConditionModel

        self.config = config
        levels = len(config.block_out_channels)
        # self-attention over the grid on every level but the first; cross-attention only in
        # the middle block (Sec. 3.2)
        down = ("DownBlock2D",) + ("AttnDownBlock2D",) * (levels - 1)
        up = ("AttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",)
        self.unet = UNet2DConditionModel(
            sample_size=2 * config.tile_size, in_channels=config.channels + 1,
            out_channels=config.channels, block_out_channels=config.block_out_channels,
            down_block_types=down, up_block_types=up,
            mid_block_type="UNetMidBlock2DCrossAttn", layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            attention_head_dim=config.attention_head_dim,
            cross_attention_dim=config.context_dim)
        self.prompt_encoder = VisualPromptEncoder(config) if config.use_prompt_encoder else None
        self.null_context = nn.Parameter(torch.zeros(1, config.num_context_tokens,
                                                     config.context_dim))

    def context(self, exemplar: Tensor, exemplar_edited: Tensor, query: Tensor,
                drop: Tensor) -> Tensor:
        """f_c for each grid, the learned null context where ``drop`` (N,) is True (and always
        without a prompt encoder)."""
        null = self.null_context.expand(len(query), -1, -1)
        if self.prompt_encoder is None:
            return null
        features = self.prompt_encoder(exemplar, exemplar_edited, query)
        return torch.where(drop[:, None, None], null, features)

    def unet_input(self, exemplar: Tensor, exemplar_edited: Tensor, query: Tensor,
                   noisy_target: Tensor, drop: Tensor) -> Tensor:
        """The grid [E, E'; I, x_t] (exemplars zeroed where dropped) and the hole mask."""
        keep = (~drop).to(exemplar.dtype)[:, None, None, None]
        grid = make_grid(exemplar * keep, exemplar_edited * keep, query, noisy_target)
        mask = hole_mask(self.config.tile_size, len(query), grid.dtype).to(grid.device)
        return torch.cat([grid, mask], dim=1)

    def forward(self, exemplar: Tensor, exemplar_edited: Tensor, query: Tensor,
                noisy_target: Tensor, timesteps: Tensor, drop: Tensor) -> Tensor:
        """Predicted noise of the hole quadrant, ``(N, C, H, W)``. Tiles in [-1, 1]."""
        x = self.unet_input(exemplar, exemplar_edited, query, noisy_target, drop)
        context = self.context(exemplar, exemplar_edited, query, drop)
        eps = self.unet(x, timesteps, encoder_hidden_states=context).sample
        return split_grid(eps)[3]


def build_scheduler(config: ImageBrushConfig):
    """The training scheduler (DDPM, epsilon prediction)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=config.train_timesteps,
                         beta_schedule=config.beta_schedule,
                         prediction_type=config.prediction_type,
                         clip_sample=True)


# --------------------------------------------------------------------------- training
@dataclass
class TrainingData:
    """Train pools and the edits of the training grids."""

    exemplars: TilePool
    queries: TilePool
    transforms: tuple[str, ...]


def training_batch(data: TrainingData, config: ImageBrushConfig, scheduler, step: int,
                   batch_size: int, seed: int) -> dict[str, Tensor]:
    """The batch of ``step``, a pure function of (step, seed): grids, noise, timesteps and
    which grids drop their instruction."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    grids = sample_edit_grids(batch_size, data.exemplars, data.queries, data.transforms,
                              generator)
    target = to_model_range(grids.target)
    noise = torch.randn(target.shape, generator=generator)
    timesteps = torch.randint(0, config.train_timesteps, (batch_size,), generator=generator)
    drop = torch.rand(batch_size, generator=generator) < config.condition_dropout
    if config.prediction_type == "epsilon":
        regression_target = noise
    elif config.prediction_type == "v_prediction":
        regression_target = scheduler.get_velocity(target, noise, timesteps)
    else:
        regression_target = target
    return {"exemplar": to_model_range(grids.exemplar),
            "exemplar_edited": to_model_range(grids.exemplar_edited),
            "query": to_model_range(grids.query),
            "noisy_target": scheduler.add_noise(target, noise, timesteps),
            "noise": noise, "target": regression_target, "timesteps": timesteps, "drop": drop}


def diffusion_loss(model: ImageBrush, batch: dict[str, Tensor]) -> Tensor:
    """L_simple (Sec. 3.1) on the hole: mean ||eps - eps_theta(x_t, t, c)||^2 (or the same
    MSE on v or on the clean quadrant, with another ``prediction_type``)."""
    prediction = model(batch["exemplar"], batch["exemplar_edited"], batch["query"],
                       batch["noisy_target"], batch["timesteps"], batch["drop"])
    return F.mse_loss(prediction, batch["target"])


@dataclass
class TrainedImageBrush:
    model: ImageBrush
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the training loop when it ran (not on a cache hit)
    cpu_seconds: float = 0.0
    steps: int = 0


def training_data(config: ImageBrushConfig, transforms: Sequence[str], source: str = "mixed",
                  seed: int = 0) -> TrainingData:
    """Training pools: exemplars from ``source`` (digits, shapes or both), queries likewise."""
    pool = tile_pool(source, "train", tile_size=config.tile_size, channels=config.channels,
                     seed=seed)
    return TrainingData(pool, pool, check_transforms(transforms))


def train_imagebrush(config: ImageBrushConfig, transforms: Sequence[str], *, steps: int,
                     batch_size: int = 32, lr: float = 2e-3, warmup_steps: int = 30,
                     source: str = "mixed", seed: int = 0, device: str | torch.device = "cpu",
                     progress: bool = True) -> TrainedImageBrush:
    """Train a toy ImageBrush with :func:`repro.train.fit` (AdamW, warm-up, cosine decay,
    gradient clipping 1.0)."""
    from repro.train import TrainConfig, fit

    transforms = check_transforms(transforms)
    if steps < 1 or batch_size < 1:
        raise ParameterError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    with torch.random.fork_rng(devices=[]):  # diffusers' init draws from the global RNG:
        torch.manual_seed(seed)  # seed it here and leave the caller's RNG state untouched
        model = ImageBrush(config)
    scheduler = build_scheduler(config)
    data = training_data(config, transforms, source, seed)
    train_config = TrainConfig(steps=steps, lr=lr, warmup_steps=warmup_steps, grad_clip=1.0,
                               weight_decay=0.0, progress=progress,
                               desc="ImageBrush" if config.use_prompt_encoder
                               else "ImageBrush w/o prompt encoder")
    cpu0 = time.process_time()
    history = fit(model, diffusion_loss,
                  lambda step: training_batch(data, config, scheduler, step, batch_size, seed),
                  train_config, device=device)
    model.eval()
    return TrainedImageBrush(model, history.loss, history.seconds, time.process_time() - cpu0,
                             steps)


def trained_imagebrush(config: ImageBrushConfig, transforms: Sequence[str], *, steps: int,
                       batch_size: int = 32, lr: float = 2e-3, warmup_steps: int = 30,
                       source: str = "mixed", seed: int = 0,
                       progress: bool = True) -> TrainedImageBrush:
    """:func:`train_imagebrush`, cached on disk (``repro.cache``) by every argument, so the
    notebooks of the chapter train each model once. Trained on the CPU (deterministic)."""
    from repro.cache import cached_tensors

    transforms = check_transforms(transforms)
    params = {"config": asdict(config), "transforms": list(transforms), "steps": steps,
              "batch_size": batch_size, "lr": lr, "warmup_steps": warmup_steps,
              "source": source, "seed": seed, "format": 1}

    def build() -> dict[str, Tensor]:
        run = train_imagebrush(config, transforms, steps=steps, batch_size=batch_size, lr=lr,
                               warmup_steps=warmup_steps, source=source, seed=seed,
                               progress=progress)
        tensors = {f"model.{k}": v.detach().clone() for k, v in run.model.state_dict().items()}
        tensors["history.loss"] = torch.tensor(run.loss)
        tensors["history.seconds"] = torch.tensor([run.seconds, run.cpu_seconds],
                                                  dtype=torch.float64)
        return tensors

    tensors = cached_tensors("imagebrush", params, build)
    model = ImageBrush(config)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    model.eval()
    seconds, cpu = (float(v) for v in tensors["history.seconds"])
    return TrainedImageBrush(model, tensors["history.loss"].tolist(), seconds, cpu, steps)


# --------------------------------------------------------------------------- sampling
@torch.no_grad()
def sample(model: ImageBrush, grids: EditGrids, *, steps: int = 20, guidance_scale: float = 1.0,
           drop_instruction: bool = False, seed: int = 0, batch_size: int = 256,
           progress: bool = True) -> Tensor:
    """Inpaint the bottom-right quadrant of each grid with DDIM (``steps`` steps) and
    classifier-free guidance of weight ``guidance_scale`` (1 = the conditional model alone);
    ``drop_instruction`` samples the unconditional model (no exemplar pair at all). Returns the
    generated quadrants in [0, 1]."""
    from diffusers import DDIMScheduler

    from repro.progress import progress as progress_bar

    if steps < 1:
        raise ParameterError(f"sampling steps must be positive, got {steps}")
    if guidance_scale < 0:
        raise ParameterError(f"guidance_scale must be >= 0, got {guidance_scale}")
    device = next(model.parameters()).device
    scheduler = DDIMScheduler.from_config(build_scheduler(model.config).config)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    exemplar = to_model_range(grids.exemplar).to(device)
    exemplar_edited = to_model_range(grids.exemplar_edited).to(device)
    query = to_model_range(grids.query).to(device)
    x = torch.randn(query.shape, generator=generator).to(device)
    n = len(query)
    guided = guidance_scale != 1.0 and not drop_instruction
    chunks = [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    bar = progress_bar(total=steps * len(chunks), desc="DDIM sampling", unit="steps",
                       enabled=progress)
    out = []
    for rows in chunks:
        xc, m = x[rows], rows.stop - rows.start
        cond = torch.full((m,), drop_instruction, dtype=torch.bool, device=device)
        for t in scheduler.timesteps:
            ts = torch.full((m,), int(t), dtype=torch.long, device=device)
            eps = model(exemplar[rows], exemplar_edited[rows], query[rows], xc, ts, cond)
            if guided:  # Sec. 3.1: eps(empty) + w (eps(c) - eps(empty))
                empty = torch.ones_like(cond)
                eps_empty = model(exemplar[rows], exemplar_edited[rows], query[rows], xc, ts,
                                  empty)
                eps = eps_empty + guidance_scale * (eps - eps_empty)
            xc = scheduler.step(eps, t, xc).prev_sample
            bar.update(1)
        out.append(to_image_range(xc).cpu())
    bar.close()
    return torch.cat(out)


# --------------------------------------------------------------------------- full scale
def check_edit_data(data: str) -> str:
    """Validate a notebook's ``DATA`` before any compute: ``"procedural"`` (the edits of
    :mod:`repro.diffusion.transforms`) runs anywhere; ``"instructpix2pix"`` (the paper's
    data, Sec. 4.1) needs the data set of ``data/manifests/instructpix2pix-clip-filtered.yaml``
    and a reader for it, which this book does not have yet, so it stops here with the manifest
    named. There is no silent fall-back to the procedural edits."""
    from repro.data import manifests_dir

    if data == "procedural":
        return data
    if data == "instructpix2pix":
        manifest = manifests_dir() / f"{EDIT_DATA_MANIFEST}.yaml"
        raise DataUnavailableError(
            f"the paper's editing data (InstructPix2Pix, Sec. 4.1) is not available here: see "
            f"{manifest} for how to download it. Its grid reader is not written yet either; "
            "until it is, the full scale cannot run (the ci and local scales use "
            "DATA = 'procedural').")
    raise ParameterError(f"unknown DATA {data!r}: use 'procedural' or 'instructpix2pix'")


def _manifest_path() -> Path:
    from repro.data import manifests_dir

    return manifests_dir() / f"{SD_INPAINTING_MANIFEST}.yaml"


def load_inpainting_pipeline(path: str | Path | None = None, *, torch_dtype=None):
    """Stable Diffusion's inpainting pipeline from a local diffusers folder (``path``, else
    where ``repro.data.fetch("sd-inpainting")`` puts it), with no text encoder, tokenizer or
    safety checker: ImageBrush conditions on visual prompt features, not text. Never
    downloads; a missing folder raises :class:`DataUnavailableError` naming the manifest."""
    from diffusers import StableDiffusionInpaintPipeline

    if path is None:
        from repro.data import fetch

        path = fetch(SD_INPAINTING_MANIFEST).parent  # the manifest's file is model_index.json
    folder = Path(path)
    if not (folder / "model_index.json").is_file():
        raise DataUnavailableError(
            f"no Stable Diffusion inpainting weights at {folder} (no model_index.json). "
            f"Manifest: {_manifest_path()}: download the diffusers folder by hand, e.g. "
            "`hf download stable-diffusion-v1-5/stable-diffusion-inpainting --local-dir "
            f"{folder}`, then pass that folder.")
    try:
        return StableDiffusionInpaintPipeline.from_pretrained(
            str(folder), text_encoder=None, tokenizer=None, safety_checker=None,
            feature_extractor=None, requires_safety_checker=False, local_files_only=True,
            torch_dtype=torch_dtype)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise DataUnavailableError(
            f"the diffusers folder {folder} is incomplete or corrupt ({err}). Manifest: "
            f"{_manifest_path()}: download it again.") from err


def inpaint_with_pipeline(pipeline, context: Tensor, null_context: Tensor, exemplar: Tensor,
                          exemplar_edited: Tensor, query: Tensor, *, steps: int = 50,
                          guidance_scale: float = 7.5,
                          generator: torch.Generator | None = None) -> Tensor:
    """The full-scale ImageBrush step: tile [E, E'; I, M] at the pipeline's resolution, inpaint
    the hole with the visual prompt features ``context`` as cross-attention context (and
    ``null_context`` as the guidance's empty condition), return the bottom-right quadrant in
    [0, 1]. Tiles ``(N, 3, H, W)`` in [0, 1]; the grid is ``(2H, 2W)`` (512 in the paper)."""
    grid = make_grid(exemplar, exemplar_edited, query)
    size = grid.shape[-1]
    mask = hole_mask(exemplar.shape[-1], len(query))
    null = null_context.expand(len(query), -1, -1)
    out = pipeline(prompt_embeds=context, negative_prompt_embeds=null, image=grid,
                   mask_image=mask, height=size, width=size, strength=1.0,
                   num_inference_steps=steps, guidance_scale=guidance_scale,
                   generator=generator, output_type="pt").images
    return split_grid(out.float().cpu())[3]


# --------------------------------------------------------------------------- figures
def image_table(columns: dict[str, Tensor], *, row_labels: Sequence[str] | None = None,
                title: str | None = None, cell_inches: float = 1.05):
    """A figure of images in a table: one column per entry of ``columns`` (name -> ``(N, C,
    H, W)`` in [0, 1]), one row per index, pixels shown as blocks (no smoothing), the row
    labels at the left. Returns the figure."""
    from repro.plotting import subplots

    names = list(columns)
    n = len(next(iter(columns.values())))
    if any(len(v) != n for v in columns.values()):
        raise ParameterError("every column needs the same number of images")
    fig, axes = subplots(n, len(names), squeeze=False,
                         figsize=(cell_inches * len(names) + 0.9, cell_inches * n + 0.4))
    for j, name in enumerate(names):
        images = columns[name].detach().float().clamp(0, 1)
        for i in range(n):
            ax = axes[i, j]
            image = images[i].permute(1, 2, 0).numpy()
            ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image,
                      cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color("0.6")
            if i == 0:
                ax.set_title(textwrap.fill(name, 11), fontsize=9)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
