"""TinyCLIP: CLIP distillation via affinity mimicking and weight inheritance.

Paper: Kan Wu, Houwen Peng, Zhenghong Zhou, Bin Xiao, Mengchen Liu, Lu Yuan, Hong Xuan, Michael
Valenzuela, Xi (Stephen) Chen, Xinggang Wang, Hongyang Chao, Han Hu. "TinyCLIP: CLIP
Distillation via Affinity Mimicking and Weight Inheritance", ICCV 2023,
https://arxiv.org/abs/2309.12314. Official code: microsoft/Cream, ``TinyCLIP/``.

Paper / code -> here:

- Affinity mimicking (Sec. 3.1, the image-to-text and text-to-image affinity distributions;
  ``clip_soft_loss.py``): :func:`affinity_mimicking_loss` = 0.5 KL(A^t_I2T || A^s_I2T) + 0.5
  KL(A^t_T2I || A^s_T2I) over the batch; :func:`distillation_loss` mixes in the ground-truth CLIP
  loss with weight 1 - alpha (the released recipes use alpha = 1); the teacher's logit scale is
  fixed (50 in every script), the student's is learnable and clamped to [0, ln 100].
- Manual weight inheritance (Sec. 3.2, ``weight_inherit.py``): :func:`interval_front_layers`
  (student layer i <- teacher layer i * floor(L_t / L_s)) and :func:`inherit_weights_manual`
  (every tensor front-sliced in every dimension; fused QKV sliced by whole heads of a fixed
  head width). The book's rule, as the released models: the image tower keeps its depth and
  loses width, the text tower keeps its width and loses depth.
- Automatic weight inheritance (Sec. 3.2, ``l0module.py``): :class:`HardConcreteGate` (CoFi's
  hard-concrete L0 gates: log alpha init 10, clamped to [ln 0.01, ln 100], beta 2/3, stretch
  (-0.1, 1.1)), :class:`AutoInheritance` (gates on every attention head and every MLP hidden
  unit of both towers, the expected remaining-parameter count, the one-sided Lagrangian
  sparsity penalty with lambdas trained by gradient *ascent*, the linear target warm-up) and
  :meth:`AutoInheritance.prune` (the code's deterministic gates sigma(0.8 log alpha / beta),
  the k smallest of each layer zeroed).
- Multi-stage progressive distillation (Sec. 3.3): :func:`progressive_configs`, intermediate
  students between teacher and target, each initialised from the previous one, always
  distilled from the original teacher.
- :func:`train_digits_teacher`: the chapter's teacher, a tiny CLIP trained on captioned digits,
  cached on disk (``repro.cache``) so both notebooks reuse it.

Departures:

- Loss in KL form: the code's soft cross-entropy minus the (constant) teacher entropy, so it is
  0 when student equals teacher; gradients are identical.
- Automatic inheritance gates heads and MLP units only, not the shared ``hidden`` (residual
  channel) mask of the code, and pruned structures are zeroed and frozen rather than cut out:
  open_clip's ``nn.MultiheadAttention`` needs the same number of heads in every layer, which
  learned masks do not give. Parameter counts report the surviving structures. The head gate
  multiplies the head's value projection (attention is linear in V, so this equals gating the
  head's output); the MLP gate multiplies the unit's column of ``c_proj``.
- One optimizer for weights, gates and lambdas (through ``repro.train.fit``); lambda ascent by
  a negated gradient instead of the code's negative learning rate (torch refuses lr < 0).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.errors import ParameterError

from .models import CaptionTokenizer, TinyCLIPConfig, contrastive_loss, create_model

__all__ = ["affinity_mimicking_loss", "distillation_loss", "interval_front_layers",
           "inherit_weights_manual", "manual_student", "HardConcreteGate", "AutoInheritance",
           "progressive_configs", "train_digits_teacher", "DigitsTeacher", "TEACHER_CONFIG",
           "STUDENT_CONFIG", "LOG_ALPHA_RANGE", "TEACHER_LOGIT_SCALE", "teacher_features",
           "distill_loss_fn", "clip_loss_fn", "clip_batches", "train_clip_student",
           "steps_to_reach", "digits_tokenizer", "auto_optimizer"]

TEACHER_LOGIT_SCALE = 50.0  # every released script: --logit-scale 50 (teacher only)
LOG_ALPHA_RANGE = (math.log(0.01), math.log(100.0))  # l0module.py constrain_parameters


# --------------------------------------------------------------------------- Sec. 3.1
def affinity_mimicking_loss(student_image: Tensor, student_text: Tensor, student_scale: Tensor,
                            teacher_image: Tensor, teacher_text: Tensor,
                            teacher_scale: Tensor | float = TEACHER_LOGIT_SCALE) -> Tensor:
    """0.5 KL(A^t_I2T || A^s_I2T) + 0.5 KL(A^t_T2I || A^s_T2I), batch mean (features are
    L2-normalised; scales are the exp'ed logit scales)."""
    student = student_scale * student_image @ student_text.T  # Z^s_ij
    teacher = teacher_scale * teacher_image @ teacher_text.T  # Z^t_ij
    i2t = F.kl_div(student.log_softmax(1), teacher.log_softmax(1), log_target=True,
                   reduction="batchmean")  # rows: image -> texts
    t2i = F.kl_div(student.T.log_softmax(1), teacher.T.log_softmax(1), log_target=True,
                   reduction="batchmean")  # rows: text -> images
    return 0.5 * i2t + 0.5 * t2i


def distillation_loss(student: tuple[Tensor, Tensor, Tensor], teacher: tuple[Tensor, Tensor],
                      *, alpha: float = 1.0, teacher_scale: float = TEACHER_LOGIT_SCALE,
                      caption_ids: Tensor | None = None) -> Tensor:
    """alpha * affinity mimicking + (1 - alpha) * ground-truth CLIP loss (``train.py``)."""
    image, text, scale = student
    loss = alpha * affinity_mimicking_loss(image, text, scale, *teacher, teacher_scale)
    if alpha < 1:
        loss = loss + (1 - alpha) * contrastive_loss(image, text, scale, caption_ids)
    return loss


# --------------------------------------------------------------------------- Sec. 3.2 manual
def interval_front_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer of each student layer: i * floor(L_t / L_s) ("interval_front")."""
    if not 1 <= student_layers <= teacher_layers:
        raise ParameterError(f"a student needs 1..{teacher_layers} layers, got {student_layers}")
    step = teacher_layers // student_layers
    return [i * step for i in range(student_layers)]


_BLOCK = re.compile(r"^(visual\.transformer|transformer)\.resblocks\.(\d+)\.(.*)$")


def inherit_weights_manual(student_sd: dict[str, Tensor], teacher_sd: dict[str, Tensor], *,
                           vision_head_width: int, text_head_width: int) -> dict[str, Tensor]:
    """The student's state dict filled from the teacher's: layers by
    :func:`interval_front_layers` per tower, every tensor front-sliced to the student's shape,
    fused QKV (``in_proj``) sliced by whole heads (head width fixed)."""
    depth = {}
    for key in (student_sd, teacher_sd):
        for name in key:
            m = _BLOCK.match(name)
            if m:
                depth.setdefault((id(key), m.group(1)), set()).add(int(m.group(2)))
    layer_map = {}
    for tower in ("visual.transformer", "transformer"):
        n_s = len(depth.get((id(student_sd), tower), ()))
        n_t = len(depth.get((id(teacher_sd), tower), ()))
        if n_s:
            layer_map[tower] = interval_front_layers(n_t, n_s)
    out = {}
    for name, target in student_sd.items():
        m = _BLOCK.match(name)
        source_name = name
        if m:
            source_name = f"{m.group(1)}.resblocks.{layer_map[m.group(1)][int(m.group(2))]}." \
                          f"{m.group(3)}"
        if source_name not in teacher_sd:
            raise ParameterError(f"teacher has no tensor {source_name!r} for student {name!r}")
        source = teacher_sd[source_name]
        if source.ndim != target.ndim or any(s < t for s, t in zip(source.shape, target.shape)):
            raise ParameterError(f"{name}: student shape {tuple(target.shape)} does not fit in "
                                 f"teacher shape {tuple(source.shape)}")
        if name.endswith("attn.in_proj_weight") or name.endswith("attn.in_proj_bias"):
            head = vision_head_width if name.startswith("visual.") else text_head_width
            heads_t, heads_s = source.shape[0] // (3 * head), target.shape[0] // (3 * head)
            view = source.reshape(3, heads_t, head, *source.shape[1:])[:, :heads_s]
            if source.ndim == 2:
                view = view[..., :target.shape[1]]
            out[name] = view.reshape(target.shape).clone()
        else:
            out[name] = source[tuple(slice(0, s) for s in target.shape)].clone()
    return out


def manual_student(teacher: nn.Module, config: TinyCLIPConfig, teacher_config: TinyCLIPConfig,
                   *, seed: int = 0) -> nn.Module:
    """A student of ``config`` whose weights are inherited from ``teacher``."""
    if config.vision_head_width != teacher_config.vision_head_width or (
            config.text_width // config.text_heads
            != teacher_config.text_width // teacher_config.text_heads):
        raise ParameterError("manual inheritance keeps the head width: the student's head "
                             "widths must equal the teacher's")
    student = create_model(config, seed=seed)
    student.load_state_dict(inherit_weights_manual(
        student.state_dict(), teacher.state_dict(),
        vision_head_width=config.vision_head_width,
        text_head_width=config.text_width // config.text_heads))
    return student


# --------------------------------------------------------------------------- Sec. 3.2 auto
class HardConcreteGate(nn.Module):
    """Hard-concrete L0 gates (Louizos et al. 2018, as CoFi / TinyCLIP's ``L0Module``)."""

    beta = 2.0 / 3.0
    limit_low, limit_high = -0.1, 1.1
    eps = 1e-6

    def __init__(self, *shape: int, init: float = 10.0):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full(shape, float(init)))

    def constrain(self) -> None:
        with torch.no_grad():
            self.log_alpha.clamp_(*LOG_ALPHA_RANGE)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """z = min(1, max(0, sigma((ln u - ln(1-u) + log alpha) / beta) (r - l) + l))."""
        u = torch.rand(self.log_alpha.shape, generator=generator).to(self.log_alpha)
        u = u.clamp(self.eps, 1 - self.eps)
        s = torch.sigmoid((u.log() - (1 - u).log() + self.log_alpha) / self.beta)
        return (s * (self.limit_high - self.limit_low) + self.limit_low).clamp(0, 1)

    def prob_nonzero(self) -> Tensor:
        """P(z > 0) = 1 - sigma(beta ln(-l / r) - log alpha)."""
        return 1 - torch.sigmoid(self.beta * math.log(-self.limit_low / self.limit_high)
                                 - self.log_alpha)

    def deterministic(self) -> Tensor:
        """The code's inference gate: sigma(0.8 log alpha / beta), the k = round(n - sum P(z>0))
        smallest of each row set to 0 (rows = layers)."""
        soft = torch.sigmoid(0.8 * self.log_alpha / self.beta)
        keep = self.prob_nonzero().sum(-1).round().long()
        out = torch.zeros_like(soft)
        order = self.log_alpha.argsort(dim=-1, descending=True, stable=True)
        for row in range(soft.shape[0]):
            idx = order[row, :int(keep[row])]
            out[row, idx] = soft[row, idx]
        return out


def _towers(config: TinyCLIPConfig) -> dict[str, tuple[str, int, int, int]]:
    """prefix -> (prefix, layers, heads, width) of the two towers."""
    return {"visual": ("visual.transformer.resblocks", config.vision_layers,
                       config.vision_width // config.vision_head_width, config.vision_width),
            "text": ("transformer.resblocks", config.text_layers, config.text_heads,
                     config.text_width)}


class AutoInheritance(nn.Module):
    """A copy of the teacher with L0 gates on every head and MLP unit of both towers.

    ``forward(images, texts)`` returns CLIP's (image, text, scale) with freshly sampled gates
    (training) or the deterministic ones (eval, or after :meth:`prune`). ``sparsity_loss``
    is the Lagrangian term; call :meth:`constrain` after each step (the loss function does it
    before the next forward)."""

    def __init__(self, teacher: nn.Module, config: TinyCLIPConfig, *, target_sparsity: float,
                 start_sparsity: float = 0.0, warmup_steps: int = 100, lambda_init: float = 10.0,
                 seed: int = 0):
        super().__init__()
        if not 0 <= target_sparsity < 1:
            raise ParameterError(f"target_sparsity must be in [0, 1), got {target_sparsity}")
        self.model = copy.deepcopy(teacher)
        self.config = config
        self.target_sparsity, self.start_sparsity = target_sparsity, start_sparsity
        self.warmup_steps = warmup_steps
        self.generator = torch.Generator().manual_seed(seed)
        self.head_gates = nn.ModuleDict()
        self.mlp_gates = nn.ModuleDict()
        for tower, (_, layers, heads, width) in _towers(config).items():
            self.head_gates[tower] = HardConcreteGate(layers, heads)
            self.mlp_gates[tower] = HardConcreteGate(layers, int(width * config.mlp_ratio))
        self.lambdas = nn.Parameter(torch.full((2,), float(lambda_init)))
        self.lambdas.register_hook(lambda g: -g)  # gradient ascent on the multipliers
        self.fixed: dict[str, Tensor] | None = None

    # ---- parameter accounting (l0module.py get_num_parameters_and_constraint)
    def _counts(self, heads: dict[str, Tensor], units: dict[str, Tensor]) -> tuple[Tensor, int]:
        remaining, total = 0.0, 0
        for tower, (_, layers, n_heads, width) in _towers(self.config).items():
            per_head = (4 * width * width + 4 * width) / n_heads
            per_unit = 2 * width + 1
            remaining = remaining + heads[tower].sum() * per_head + units[tower].sum() * per_unit
            total += int(layers * n_heads * per_head + units[tower].numel() * per_unit)
        return remaining, total

    def expected_sparsity(self) -> Tensor:
        probs = {t: g.prob_nonzero() for t, g in self.head_gates.items()}
        units = {t: g.prob_nonzero() for t, g in self.mlp_gates.items()}
        remaining, total = self._counts(probs, units)
        return 1 - remaining / total

    def target(self, step: int) -> float:
        frac = min(1.0, step / max(self.warmup_steps, 1))
        return self.start_sparsity + (self.target_sparsity - self.start_sparsity) * frac

    def sparsity_loss(self, step: int) -> Tensor:
        """lambda_1 max(p(t) - q, 0) + lambda_2 max(p(t) - q, 0)^2 (one-sided Lagrangian)."""
        gap = (self.target(step) - self.expected_sparsity()).clamp(min=0)
        return self.lambdas[0] * gap + self.lambdas[1] * gap * gap

    def constrain(self) -> None:
        for gate in [*self.head_gates.values(), *self.mlp_gates.values()]:
            gate.constrain()

    # ---- masked forward
    def gates(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        if self.fixed is not None:
            return ({t: self.fixed[f"head.{t}"] for t in self.head_gates},
                    {t: self.fixed[f"mlp.{t}"] for t in self.mlp_gates})
        if self.training:
            return ({t: g.sample(self.generator) for t, g in self.head_gates.items()},
                    {t: g.sample(self.generator) for t, g in self.mlp_gates.items()})
        return ({t: g.deterministic() for t, g in self.head_gates.items()},
                {t: g.deterministic() for t, g in self.mlp_gates.items()})

    def masked_parameters(self) -> dict[str, Tensor]:
        heads, units = self.gates()
        params = dict(self.model.named_parameters())
        out = {}
        for tower, (prefix, layers, n_heads, width) in _towers(self.config).items():
            head_width = width // n_heads
            for layer in range(layers):
                p = f"{prefix}.{layer}"
                w, b = params[f"{p}.attn.in_proj_weight"], params[f"{p}.attn.in_proj_bias"]
                z = heads[tower][layer].repeat_interleave(head_width)  # one gate per V row
                scale = torch.cat([torch.ones(2 * width, device=w.device, dtype=w.dtype), z])
                out[f"{p}.attn.in_proj_weight"] = w * scale[:, None]
                out[f"{p}.attn.in_proj_bias"] = b * scale
                c_proj = params[f"{p}.mlp.c_proj.weight"]
                out[f"{p}.mlp.c_proj.weight"] = c_proj * units[tower][layer][None, :]
        return out

    def forward(self, images: Tensor, texts: Tensor):
        from torch.func import functional_call

        return functional_call(self.model, self.masked_parameters(), (images, texts),
                               strict=False)

    def encode_image(self, images: Tensor) -> Tensor:
        return self._call("encode_image", images)

    def encode_text(self, texts: Tensor) -> Tensor:
        return self._call("encode_text", texts)

    def _call(self, method: str, x: Tensor) -> Tensor:
        from torch.func import functional_call

        params = {f"model.{k}": v for k, v in self.masked_parameters().items()}
        return functional_call(_Method(self.model, method), params, (x,), strict=False)

    def prune(self) -> dict[str, int]:
        """Fix the deterministic gates (0 = pruned head / unit), freeze the gates, and return
        the surviving structure counts."""
        with torch.no_grad():
            self.fixed = {}
            for t, g in self.head_gates.items():
                self.fixed[f"head.{t}"] = g.deterministic().detach()
            for t, g in self.mlp_gates.items():
                self.fixed[f"mlp.{t}"] = g.deterministic().detach()
        for p in [*self.head_gates.parameters(), *self.mlp_gates.parameters(), self.lambdas]:
            p.requires_grad_(False)
        return self.structure()

    def structure(self) -> dict[str, int]:
        heads, units = self.gates()
        counts = {}
        for t in self.head_gates:
            counts[f"{t} heads"] = int((heads[t] > 0).sum())
            counts[f"{t} mlp units"] = int((units[t] > 0).sum())
        remaining, total = self._counts({t: (h > 0).float() for t, h in heads.items()},
                                        {t: (u > 0).float() for t, u in units.items()})
        counts["prunable params kept"] = int(remaining)
        counts["prunable params"] = total
        return counts


class _Method(nn.Module):
    """``forward`` = ``model.<method>``, so torch.func.functional_call can swap parameters."""

    def __init__(self, model: nn.Module, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self.model, self.method)(x)


# --------------------------------------------------------------------------- Sec. 3.3
def progressive_configs(teacher: TinyCLIPConfig, student: TinyCLIPConfig,
                        stages: int) -> list[TinyCLIPConfig]:
    """``stages`` configs from just below the teacher to ``student`` (the last one): vision
    width and text depth interpolated linearly (width rounded to whole heads), the manual rule
    of the released multi-stage models."""
    if stages < 1:
        raise ParameterError(f"stages must be >= 1, got {stages}")
    head = teacher.vision_head_width
    out = []
    for k in range(1, stages + 1):
        frac = k / stages
        width = teacher.vision_width + frac * (student.vision_width - teacher.vision_width)
        layers = teacher.text_layers + frac * (student.text_layers - teacher.text_layers)
        out.append(replace(student, vision_width=max(head, int(round(width / head)) * head),
                           text_layers=max(1, int(round(layers)))))
    return out


# --------------------------------------------------------------------------- the teacher
TEACHER_CONFIG = TinyCLIPConfig(embed_dim=32, image_size=8, patch_size=2, vision_width=64,
                                vision_layers=4, vision_head_width=16, text_width=64,
                                text_layers=4, text_heads=4, context_length=10)
# the manual rule: image tower keeps its depth and halves its width; text tower keeps its
# width and halves its depth
STUDENT_CONFIG = replace(TEACHER_CONFIG, vision_width=32, text_layers=2)


@dataclass
class DigitsTeacher:
    model: nn.Module
    tokenizer: CaptionTokenizer
    config: TinyCLIPConfig
    accuracy: float  # zero-shot top-1 (%) on the held-out digits
    steps: int


def digits_tokenizer(context_length: int = 10) -> CaptionTokenizer:
    from .data import DIGIT_NAMES, DIGIT_TEMPLATES

    return CaptionTokenizer.fit([t.format(n) for t in DIGIT_TEMPLATES for n in DIGIT_NAMES],
                                context_length)


def clip_batches(data, tokenizer: CaptionTokenizer, batch_size: int, seed: int):
    """``batch_fn(step)`` for ``repro.train.fit``: (images, tokens, caption ids, indices)."""
    from repro.data import batch_indices

    tokens = tokenizer(data.captions)

    def batch_fn(step: int):
        idx = batch_indices(len(data), batch_size, step, seed=seed)
        return data.images[idx], tokens[idx], data.caption_ids[idx], idx

    return batch_fn


def clip_loss_fn(model: nn.Module, batch) -> Tensor:
    """The plain (ground-truth) CLIP loss, caption-aware (see repro.clip.models)."""
    images, texts, caption_ids = batch[:3]
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    image, text, scale = model(images, texts)[:3]
    return contrastive_loss(image, text, scale, caption_ids)


def train_digits_teacher(*, config: TinyCLIPConfig = TEACHER_CONFIG, steps: int = 400,
                         batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                         progress: bool = True) -> DigitsTeacher:
    """The chapter's teacher: a tiny CLIP trained with the CLIP loss on captioned digits,
    computed once per (config, steps, batch, lr, seed, repro version) and cached on disk."""
    from repro.cache import cached_tensors
    from repro.train import TrainConfig, fit

    from .data import DIGIT_TEMPLATES, captioned_digits
    from .evaluate import evaluate_clip

    tokenizer = digits_tokenizer(config.context_length)
    config = replace(config, vocab_size=tokenizer.vocab_size)
    train, test = captioned_digits(seed=seed)
    params = {"config": asdict(config), "steps": steps, "batch": batch_size, "lr": lr,
              "seed": seed}

    def build() -> dict[str, Tensor]:
        model = create_model(config, seed=seed)
        fit(model, clip_loss_fn, clip_batches(train, tokenizer, batch_size, seed),
            TrainConfig(steps=steps, lr=lr, warmup_steps=steps // 10, weight_decay=0.1,
                        betas=(0.9, 0.98), grad_clip=5.0, progress=progress,
                        desc="teacher"))
        acc = evaluate_clip(model, tokenizer, test, DIGIT_TEMPLATES, retrieval=False)
        return {**{f"model.{k}": v for k, v in model.state_dict().items()},
                "accuracy": torch.tensor(acc["zero-shot top-1 (%)"])}

    tensors = cached_tensors("tinyclip-digits-teacher", params, build)
    model = create_model(config, seed=seed)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return DigitsTeacher(model, tokenizer, config, float(tensors["accuracy"]), steps)


@torch.no_grad()
def teacher_features(teacher: nn.Module, data, tokenizer: CaptionTokenizer,
                     batch_size: int = 512) -> tuple[Tensor, Tensor]:
    """The frozen teacher's unit-norm features of every training pair, computed once (there is
    no augmentation at toy scale, so they do not change from epoch to epoch)."""
    teacher.eval()
    tokens = tokenizer(data.captions)
    image, text = [], []
    for i in range(0, len(data), batch_size):
        out = teacher(data.images[i:i + batch_size], tokens[i:i + batch_size])
        image.append(out[0])
        text.append(out[1])
    return torch.cat(image), torch.cat(text)


def distill_loss_fn(teacher: tuple[Tensor, Tensor], *, alpha: float = 1.0,
                    teacher_scale: float = TEACHER_LOGIT_SCALE):
    """``loss_fn`` for ``repro.train.fit``: the student (any module returning CLIP's
    (image, text, scale)) distilled from the teacher's precomputed features
    (:func:`teacher_features`, indexed by the batch's indices); an :class:`AutoInheritance`
    student adds its sparsity loss (the step is the loss function's call count)."""
    teacher_image, teacher_text = teacher
    calls = {"step": 0}

    def loss_fn(student: nn.Module, batch):
        images, texts, caption_ids, idx = batch
        model = student.model if isinstance(student, AutoInheritance) else student
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if isinstance(student, AutoInheritance):
            student.constrain()
        out = student(images, texts)[:3]
        target = teacher_image[idx].to(images.device), teacher_text[idx].to(images.device)
        loss = distillation_loss(out, target, alpha=alpha,
                                 teacher_scale=teacher_scale, caption_ids=caption_ids)
        metrics = {}
        if isinstance(student, AutoInheritance) and student.fixed is None:
            sparsity = student.sparsity_loss(calls["step"])
            metrics = {"expected sparsity": float(student.expected_sparsity().detach()),
                       "distill": float(loss.detach())}
            loss = loss + sparsity
        calls["step"] += 1
        return loss, metrics

    return loss_fn



def train_clip_student(student: nn.Module, loss_fn, train, test, tokenizer: CaptionTokenizer,
                       *, steps: int, batch_size: int, lr: float, seed: int,
                       eval_every: int = 10, desc: str = "student", progress: bool = True,
                       templates: Sequence[str] | None = None,
                       optimizer: torch.optim.Optimizer | None = None, step_offset: int = 0):
    """Train ``student`` with ``loss_fn`` through ``repro.train.fit`` on ``train`` and return
    the History; ``history.evals`` holds zero-shot top-1 (%) on ``test`` at step 0, every
    ``eval_every`` steps and at the end (steps counted from ``step_offset``, for a stage that
    continues an earlier one)."""
    from repro.train import TrainConfig, fit

    from .data import DIGIT_TEMPLATES
    from .evaluate import evaluate_clip

    templates = list(templates or DIGIT_TEMPLATES)
    for p in student.parameters():
        p.requires_grad_(True)
    if isinstance(student, AutoInheritance) and student.fixed is not None:
        for p in [*student.head_gates.parameters(), *student.mlp_gates.parameters(),
                  student.lambdas]:
            p.requires_grad_(False)

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {"top1": evaluate_clip(model, tokenizer, test, templates,
                                      retrieval=False)["zero-shot top-1 (%)"]}

    start = evaluate(student)
    config = TrainConfig(steps=steps, lr=lr, warmup_steps=min(10, steps // 10),
                         weight_decay=0.1, betas=(0.9, 0.98), grad_clip=5.0,
                         eval_every=eval_every, progress=progress, desc=desc)
    history = fit(student, loss_fn, clip_batches(train, tokenizer, batch_size, seed), config,
                  eval_fn=evaluate, optimizer=optimizer)
    history.evals.insert(0, {"step": 0, **start})
    for e in history.evals:
        e["step"] += step_offset
    return history


def steps_to_reach(history, target: float, key: str = "top1") -> float:
    """First step at which ``history.evals[key]`` reaches ``target``, linearly interpolated
    between evaluations; ``inf`` if it never does."""
    points = [(e["step"], e[key]) for e in history.evals]
    for (s0, a0), (s1, a1) in zip(points, points[1:]):
        if a0 >= target:
            return float(s0)
        if a1 >= target:
            return s0 + (s1 - s0) * (target - a0) / (a1 - a0)
    return float(points[0][0]) if points and points[0][1] >= target else math.inf


def auto_optimizer(auto: AutoInheritance, *, lr: float, mask_lr: float = 0.02,
                   weight_decay: float = 0.1) -> torch.optim.Optimizer:
    """AdamW over the model's weights (decay on matrices) and, with ``mask_lr`` and no decay,
    the gates' log alphas and the Lagrange multipliers (ascent by their negated gradient)."""
    weights = [p for p in auto.model.parameters() if p.requires_grad]
    gates = [g.log_alpha for g in [*auto.head_gates.values(), *auto.mlp_gates.values()]]
    groups = [{"params": [p for p in weights if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in weights if p.ndim < 2], "weight_decay": 0.0},
              {"params": [*gates, auto.lambdas], "weight_decay": 0.0, "lr": mask_lr}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))
