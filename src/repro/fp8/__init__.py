"""FP8-LM: Training FP8 Large Language Models (Peng et al., arXiv 2310.18313; code Azure/MS-AMP).

Paper section → module:

* App. A.1 FP8 formats (E4M3, E5M2), saturating casts → :mod:`repro.fp8.formats`
* App. A.2 tensor scaling, just-in-time and delayed, power-of-two scales → :mod:`.scaling`
* §2.2 tensors stored as (payload, scale), FP16 "with tensor scaling" → :mod:`.tensor`
* §2 FP8 GEMMs of a linear layer (E4M3 forward, E5M2 gradients) → :mod:`.linear`,
  :mod:`.conversion` (``convert``)
* §3 / MS-AMP docs: optimization levels O1, O2, O3 → :mod:`.levels`
* §2.2 FP8 optimizer with precision decoupling → :mod:`.optim`
* §2.1 FP8 gradient all-reduce with automatic scaling (Eqs. 4-6) → :mod:`.distributed`
* §2.3 FP8 ZeRO, whole-tensor greedy partition (Alg. 1) → :mod:`.zero`
* §3 / Table 5 memory: bytes per parameter → :mod:`.memory` (``held_bytes``: what the process
  really holds; ``training_state_bytes``: the paper's layout accounting)
* the same numerics without host syncs (device scales, cached FP8 weights) → :mod:`.fast`
* torchao's float8 training as a second backend → :mod:`.torchao_backend`

Names are exported lazily, so ``import repro.fp8`` does not import torch.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "E4M3": "formats", "E5M2": "formats", "quantize": "formats", "dequantize": "formats",
    "ScalingState": "scaling", "power_of_two_scale": "scaling",
    "ScaledTensor": "tensor",
    "FP8Linear": "linear",
    "convert": "conversion", "unconvert": "conversion", "fp8_stats": "conversion",
    "fp8_scaling_state": "conversion", "load_fp8_scaling_state": "conversion",
    "LEVELS": "levels", "get_level": "levels",
    "FP8AdamW": "optim",
    "fp8_all_reduce": "distributed", "register_fp8_comm_hook": "distributed",
    "simulate_all_reduce": "distributed", "AutoScaler": "distributed",
    "run_gloo_all_reduce": "gloo_demo",
    "ScalingProbe": "probe",
    "partition_greedy": "zero", "partition_contiguous": "zero",
    "training_state_bytes": "memory", "held_bytes": "memory",
    "param_groups": "optim",
    "FastFP8Meta": "fast",
    "convert_torchao": "torchao_backend",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
