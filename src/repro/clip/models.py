"""Tiny CLIPs over open_clip: configs registered at run time, random init, no download.

The book's CLIP chapters (TinyCLIP, A-CLIP) train CLIPs small enough for one CPU thread. They
are ordinary ``open_clip.CLIP`` models: :func:`register_model_config` writes an open_clip
model config (the JSON open_clip's own ``model_configs/`` hold) and registers it with
``open_clip.add_model_config``, and :func:`create_model` builds it through
``open_clip.create_model(name, pretrained=None)``, so ``create_model("repro-tiny-teacher")``
reads like the real thing and every state-dict name is open_clip's (which TinyCLIP's
weight-inheritance rule is written against).

- :class:`CaptionTokenizer` runs open_clip's own BPE tokenizer and keeps only the BPE ids a
  toy corpus uses, renumbered densely with end-of-text as the largest id (open_clip pools the
  text tower at the argmax token id). A 49,408-row embedding table would otherwise be 95 % of
  a toy model's parameters. At full scale use ``open_clip.get_tokenizer(name)`` directly.
- :func:`contrastive_loss` is open_clip's ``ClipLoss`` (symmetric InfoNCE). With
  ``caption_ids`` it uses soft targets spread over every pair whose caption is identical: a
  toy batch of 10-12 classes repeats captions, and plain InfoNCE would push identical
  captions apart (departure from CLIP, which assumes unique captions).
- :func:`load_pretrained` is the full-scale path, ``open_clip.create_model_and_transforms(
  name, pretrained=...)``; :func:`load_hf_clip` loads checkpoints published in transformers'
  CLIP format (TinyCLIP's releases) with ``transformers.CLIPModel`` and wraps them in
  :class:`HFCLIP`, which has open_clip's ``encode_image`` / ``encode_text`` methods.
  Neither downloads anything when given a local path; a missing file is a
  :class:`~repro.errors.DataUnavailableError` naming the manifest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from repro.errors import CheckpointError, DataUnavailableError, ParameterError

__all__ = ["TinyCLIPConfig", "CaptionTokenizer", "register_model_config", "create_model",
           "contrastive_loss", "load_pretrained", "load_hf_clip", "HFCLIP", "count_parameters",
           "save_random_hf_clip", "hf_text_encoder"]


@dataclass
class TinyCLIPConfig:
    """A tiny CLIP: a ViT image tower and a causal text transformer, open_clip's layout."""

    embed_dim: int = 32
    image_size: int = 8
    patch_size: int = 2
    vision_width: int = 64
    vision_layers: int = 4
    vision_head_width: int = 16
    text_width: int = 64
    text_layers: int = 4
    text_heads: int = 4
    context_length: int = 8
    vocab_size: int = 64
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ParameterError(f"image_size {self.image_size} is not a multiple of "
                                 f"patch_size {self.patch_size}")
        if self.vision_width % self.vision_head_width:
            raise ParameterError(f"vision_width {self.vision_width} is not a multiple of "
                                 f"vision_head_width {self.vision_head_width}")
        if self.text_width % self.text_heads:
            raise ParameterError(f"text_width {self.text_width} is not divisible by "
                                 f"text_heads {self.text_heads}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def open_clip_config(self) -> dict[str, Any]:
        """The JSON open_clip reads from ``model_configs/<name>.json``."""
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {"image_size": self.image_size, "patch_size": self.patch_size,
                           "width": self.vision_width, "layers": self.vision_layers,
                           "head_width": self.vision_head_width, "mlp_ratio": self.mlp_ratio},
            "text_cfg": {"context_length": self.context_length, "vocab_size": self.vocab_size,
                         "width": self.text_width, "heads": self.text_heads,
                         "layers": self.text_layers, "mlp_ratio": self.mlp_ratio},
        }


def _config_dir() -> Path:
    from repro.cache import cache_dir

    return cache_dir() / "open_clip_configs"


def register_model_config(name: str, config: TinyCLIPConfig) -> str:
    """Register ``config`` with open_clip under ``name`` (a JSON file in the artifact cache,
    added with ``open_clip.add_model_config``) and return the name."""
    import open_clip

    from repro.io import atomic_write_text

    path = _config_dir() / f"{name}.json"
    text = json.dumps(config.open_clip_config(), indent=2, sort_keys=True)
    changed = not path.exists() or path.read_text() != text
    if changed:
        atomic_write_text(path, text)
    from open_clip import factory

    known = getattr(factory, "_MODEL_CONFIG_PATHS", [])
    if changed or path not in known or name not in open_clip.list_models():
        open_clip.add_model_config(path)  # rescans every registered config folder
    return name


def create_model(config: TinyCLIPConfig, *, seed: int = 0, name: str | None = None) -> nn.Module:
    """A randomly initialised ``open_clip.CLIP`` of ``config`` (seeded, nothing downloaded)."""
    import open_clip

    name = name or "repro-tiny-" + "-".join(f"{v}" for v in asdict(config).values())
    register_model_config(name, config)
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # open_clip logs "No pretrained weights loaded" (root)
    try:
        with torch.random.fork_rng(devices=[]):  # open_clip initialises from the global RNG
            torch.manual_seed(seed)
            model = open_clip.create_model(name, pretrained=None)
    finally:
        logging.disable(previous)
    return model


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- tokenizer
class CaptionTokenizer:
    """open_clip's BPE tokenizer restricted to the BPE ids of a fixed corpus.

    Ids: 0 = padding, 1 = start of text, 2 ... n+1 = the corpus's BPE ids in increasing order,
    n+2 = end of text (the largest id, so open_clip's argmax pooling finds it).
    """

    def __init__(self, bpe_ids: list[int], context_length: int):
        self.bpe_ids = sorted(set(bpe_ids))
        self.context_length = context_length
        self._compact = {b: i + 2 for i, b in enumerate(self.bpe_ids)}
        self.sot, self.eot = 1, len(self.bpe_ids) + 2

    @staticmethod
    def _bpe():
        from open_clip.tokenizer import SimpleTokenizer

        return SimpleTokenizer()

    @classmethod
    def fit(cls, texts: list[str], context_length: int = 8) -> CaptionTokenizer:
        bpe = cls._bpe()
        ids = {i for t in texts for i in bpe.encode(t)}
        tok = cls(sorted(ids), context_length)
        tok._encoder = bpe
        tok(texts)  # refuse a corpus whose captions do not fit the context
        return tok

    @property
    def vocab_size(self) -> int:
        return self.eot + 1

    def __call__(self, texts: list[str] | str) -> Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        bpe = getattr(self, "_encoder", None) or self._bpe()
        self._encoder = bpe
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            pieces = bpe.encode(text)
            unknown = [p for p in pieces if p not in self._compact]
            if unknown:
                raise ParameterError(
                    f"caption {text!r} has words outside the tokenizer's corpus "
                    f"({bpe.decode(unknown)!r}); fit the CaptionTokenizer on these texts too")
            ids = [self.sot, *(self._compact[p] for p in pieces), self.eot]
            if len(ids) > self.context_length:
                raise ParameterError(f"caption {text!r} needs {len(ids)} tokens, more than "
                                     f"context_length={self.context_length}")
            out[row, :len(ids)] = torch.tensor(ids)
        return out


# --------------------------------------------------------------------------- loss
def contrastive_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor,
                     caption_ids: Tensor | None = None) -> Tensor:
    """CLIP's symmetric InfoNCE on normalised features (open_clip's ``ClipLoss``).

    With ``caption_ids`` (one id per pair, equal ids = identical captions) the target of each
    row is uniform over the pairs sharing its caption (see the module docstring)."""
    if caption_ids is None:
        from open_clip.loss import ClipLoss

        return ClipLoss()(image_features, text_features, logit_scale)
    logits = logit_scale * image_features @ text_features.T
    same = (caption_ids[:, None] == caption_ids[None, :]).to(logits.dtype)
    targets = same / same.sum(1, keepdim=True)
    loss_i = torch.sum(-targets * logits.log_softmax(1), 1).mean()
    loss_t = torch.sum(-targets * logits.T.log_softmax(1), 1).mean()
    return 0.5 * (loss_i + loss_t)


# --------------------------------------------------------------------------- pretrained
def load_pretrained(name: str, pretrained: str | Path, *, manifest: str | None = None):
    """``open_clip.create_model_and_transforms(name, pretrained=...)`` for a local file (or a
    registry tag when online); returns (model, preprocess_val)."""
    import open_clip

    is_path = isinstance(pretrained, Path) or "/" in str(pretrained) or str(
        pretrained).endswith((".pt", ".bin", ".safetensors"))
    if is_path and not Path(pretrained).is_file():
        where = f" (see data/manifests/{manifest}.yaml)" if manifest else ""
        raise DataUnavailableError(f"pretrained weights {pretrained} not found{where}: "
                                   "download them first; nothing is downloaded at run time")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name,
                                                                     pretrained=str(pretrained))
    except RuntimeError as err:
        raise CheckpointError(f"{pretrained} does not fit open_clip model {name!r}: "
                              f"{str(err)[:300]}") from err
    return model, preprocess


class HFCLIP(nn.Module):
    """A ``transformers.CLIPModel`` with open_clip's ``encode_image``/``encode_text``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def encode_image(self, images: Tensor, normalize: bool = False) -> Tensor:
        out = self.model.get_image_features(pixel_values=images)
        out = getattr(out, "pooler_output", out)
        return nn.functional.normalize(out, dim=-1) if normalize else out

    def encode_text(self, input_ids: Tensor, normalize: bool = False,
                    attention_mask: Tensor | None = None) -> Tensor:
        out = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        out = getattr(out, "pooler_output", out)
        return nn.functional.normalize(out, dim=-1) if normalize else out

    @property
    def logit_scale(self) -> Tensor:
        return self.model.logit_scale


def load_hf_clip(path: str | Path, *, manifest: str = "tinyclip-checkpoints"):
    """Load a checkpoint in transformers' CLIP format (a folder with ``config.json`` and
    ``model.safetensors``, as TinyCLIP publishes them) and its tokenizer when the folder has
    one. Returns (HFCLIP, tokenizer or None). Never downloads; never runs remote code."""
    from transformers import AutoTokenizer, CLIPModel

    path = Path(path)
    if not (path / "config.json").is_file():
        raise DataUnavailableError(
            f"no transformers CLIP checkpoint at {path} (config.json missing). Download one of "
            f"the checkpoints listed in data/manifests/{manifest}.yaml and pass its folder")
    try:
        model = CLIPModel.from_pretrained(str(path), local_files_only=True,
                                          trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a loadable CLIPModel checkpoint: "
                              f"{str(err)[:300]}") from err
    tokenizer = None
    if (path / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return HFCLIP(model.eval()), tokenizer


def save_random_hf_clip(path: str | Path, *, seed: int = 0, width: int = 32,
                        image_size: int = 32, patch_size: int = 16):
    """A randomly initialised ``transformers.CLIPModel`` saved as TinyCLIP's checkpoints are
    (config.json + model.safetensors), with CLIP's 49,408-token vocabulary: the stand-in for a
    released checkpoint at ci. Returns (path, the model as saved)."""
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={"vocab_size": 49408, "hidden_size": width, "intermediate_size": 2 * width,
                     "num_hidden_layers": 1, "num_attention_heads": 2,
                     "max_position_embeddings": 77},
        vision_config={"hidden_size": width, "intermediate_size": 2 * width,
                       "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": image_size, "patch_size": patch_size},
        projection_dim=width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    model.save_pretrained(str(path), safe_serialization=True)
    return Path(path), model.eval()


def hf_text_encoder(model: HFCLIP, tokenizer=None):
    """``texts -> features`` for a :class:`HFCLIP`: its own tokenizer when the checkpoint has
    one, else open_clip's BPE tokenizer (the same vocabulary and ids as OpenAI's CLIP, which
    TinyCLIP's checkpoints use)."""
    import open_clip

    def encode(texts: list[str]) -> Tensor:
        if tokenizer is not None:
            batch = tokenizer(texts, padding=True, return_tensors="pt")
            return model.encode_text(batch["input_ids"],
                                     attention_mask=batch.get("attention_mask"))
        return model.encode_text(open_clip.tokenize(texts))

    return encode
