"""Vision–language: tiny CLIPs over open_clip and the book's two CLIP papers.

* :mod:`repro.clip.models` — tiny CLIP configs registered with open_clip, a compact
  tokenizer over open_clip's BPE, the contrastive loss, the pretrained paths (open_clip and
  transformers' ``CLIPModel``);
* :mod:`repro.clip.data` — captioned digits, compositional scenes, readers of webdataset
  shards, CSV pairs and ImageNet-style class folders;
* :mod:`repro.clip.evaluate` — zero-shot classification with prompt ensembling, retrieval R@K;
* :mod:`repro.clip.tinyclip` — TinyCLIP (affinity mimicking, weight inheritance);
* :mod:`repro.clip.aclip` — A-CLIP (attentive token removal with an EMA encoder).

Names are exported lazily, so ``import repro.clip`` imports neither torch nor open_clip.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "TinyCLIPConfig": "models", "CaptionTokenizer": "models", "create_model": "models",
    "register_model_config": "models", "contrastive_loss": "models",
    "load_pretrained": "models", "load_hf_clip": "models",
    "CaptionedImages": "data", "captioned_digits": "data", "compositional_scenes": "data",
    "read_csv_pairs": "data", "read_webdataset_shards": "data", "read_image_folder": "data",
    "load_images": "data",
    "zero_shot_classifier": "evaluate", "zero_shot_accuracy": "evaluate",
    "retrieval_recall": "evaluate", "evaluate_clip": "evaluate",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
