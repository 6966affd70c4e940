"""Swap a model's linear layers for FP8 ones (MS-AMP ``LinearReplacer.replace``).

:func:`convert` replaces every ``nn.Linear`` in place with an :class:`~repro.fp8.linear.FP8Linear`
that shares its weight and bias Parameters, so an optimizer built before or after the swap,
weight tying and ``state_dict`` keys are unchanged. ``skip`` keeps chosen layers in high
precision (MS-AMP marks them with ``use_fp32_linear``). :func:`fp8_stats` collects each FP8
layer's overflow/underflow statistics; :func:`unconvert` undoes the swap.

transformers' GPT-2 family computes attention and MLP with ``Conv1D`` (weight stored
(in, out)), not ``nn.Linear``: converting only its ``nn.Linear`` would touch nothing but the
tied ``lm_head``. :func:`convert` therefore refuses such a model unless ``conv1d=True``, which
converts the Conv1D layers too (same Parameters, used transposed).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable

from torch import nn

from .levels import FP8Level, get_level
from .linear import SUPPORTED_DTYPES, FP8Linear, FP8LinearMeta

__all__ = ["convert", "unconvert", "fp8_stats", "fp8_scaling_state", "load_fp8_scaling_state"]

SkipSpec = str | Callable[[str, nn.Module], bool]


def _is_conv1d(module: nn.Module) -> bool:
    """transformers' ``pytorch_utils.Conv1D``, detected without importing transformers."""
    cls = type(module)
    return cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers")


def _matches(pattern: SkipSpec, name: str, module: nn.Module) -> bool:
    if callable(pattern):
        return bool(pattern(name, module))
    return (name == pattern or name.endswith("." + pattern) or fnmatch.fnmatchcase(name, pattern))


def _candidates(model: nn.Module, conv1d: bool) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) for every linear to convert, shared modules listed per path."""
    # nn.MultiheadAttention reads out_proj.weight directly and never calls out_proj: skip it.
    mha = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    found = []
    for name, module in model.named_modules(remove_duplicate=False):
        if any(name.startswith(p + ".") for p in mha):
            continue
        if isinstance(module, nn.Linear) or (conv1d and _is_conv1d(module)):
            found.append((name, module))
    return found


def convert(
    model: nn.Module,
    level: str | FP8Level = "O1",
    *,
    skip: Iterable[SkipSpec] = (),
    scaling: str = "delayed",
    history_len: int = 16,
    wgrad: str | None = None,
    gemm: str = "auto",
    margin: int = 0,
    conv1d: bool = False,
    fast: bool = False,
    stats: bool = True,
    store_master: bool = False,
) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (recursively, in place) by an FP8Linear.

    ``level`` is an optimization level name (:data:`repro.fp8.levels.LEVELS`); it sets the
    default weight-gradient format (``wgrad``, E4M3 at every level). ``skip`` holds qualified
    module names, name suffixes (``"lm_head"``), fnmatch patterns (``"*.mlp.*"``) or callables
    ``(name, module) -> bool``; a string that matches no linear is an error (likely a typo).
    ``scaling`` (``"delayed"``/``"jit"``) and ``history_len`` apply to the input and
    output-gradient casts; weights are always scaled just-in-time. Everything is checked before
    the first layer is swapped, so a failing call leaves the model untouched.
    ``fast=True`` gives every layer the device-resident :class:`repro.fp8.fast.FastFP8Meta`
    (no host sync; ``stats`` turns its device counters on). ``store_master=True`` stores each
    converted weight as the level's master (:meth:`FP8Linear.store_master`: FP16 + scale at
    O1/O2, E4M3 + scale at O3), so the model holds the bytes the paper counts; build the
    optimizer afterwards. A weight shared with another module (a tied output layer) cannot be
    re-stored: skip that layer.
    Returns ``model``.
    """
    lvl = get_level(level)
    skip = list(skip)
    model_name = type(model).__name__
    conv1d_layers = [n for n, m in model.named_modules() if _is_conv1d(m)]
    if conv1d_layers and not conv1d:
        raise ValueError(
            f"{model_name} has {len(conv1d_layers)} transformers Conv1D layers (GPT-2 style, "
            f"e.g. {conv1d_layers[0]!r}); they are not nn.Linear, so only a few linears would run "
            "in FP8. Use a Llama-style config (e.g. repro.lm.tiny_llama), where every "
            "projection is an nn.Linear, or pass conv1d=True to convert Conv1D layers too.")
    found = _candidates(model, conv1d)
    if not found:
        n_fp8 = sum(isinstance(m, FP8Linear) for m in model.modules())
        hint = (f" (it already has {n_fp8} FP8Linear layers: was it converted twice?)"
                if n_fp8 else "; FP8 training converts the linear layers' GEMMs")
        raise ValueError(f"{model_name} has no nn.Linear layer to convert{hint}")
    for pattern in skip:
        if isinstance(pattern, str) and not any(_matches(pattern, n, m) for n, m in found):
            raise ValueError(f"skip pattern {pattern!r} matches no linear layer of {model_name}; "
                             f"linear layers are e.g. {[n for n, _ in found[:3]]}")
    selected = [(n, m) for n, m in found if not any(_matches(p, n, m) for p in skip)]
    for name, module in selected:
        for pname, p in module.named_parameters(recurse=False):
            if p.dtype not in SUPPORTED_DTYPES:
                raise TypeError(f"layer {name!r} has a {p.dtype} {pname}: FP8 conversion supports "
                                "float32, bfloat16 and float16 models (call model.float() first)")
    options = dict(scaling=scaling, history_len=history_len,
                   wgrad=lvl.grad_format if wgrad is None else wgrad, gemm=gemm, margin=margin)
    FP8LinearMeta(**options)  # validate the options before any swap
    if store_master:
        users: dict[int, set[str]] = {}
        for mname, m in model.named_modules(remove_duplicate=False):
            for p in m.parameters(recurse=False):
                users.setdefault(id(p), set()).add(mname)
        selected_names = {n for n, _ in selected}
        for name, module in selected:
            others = users.get(id(module.weight), set()) - selected_names
            if others:
                raise ValueError(
                    f"layer {name!r} shares its weight with {sorted(others)[0]!r} (tied "
                    "weights); store_master would untie them: pass skip=[...] for it")
    fast_options = dict(fast=fast, stats=stats) if fast else {}
    if store_master:
        fast_options["master"] = ("e4m3" if lvl.weight_format in ("e4m3", "e5m2")
                                  else "fp16")
    replaced: dict[int, FP8Linear] = {}  # a module reachable by two paths stays one module
    for name, module in selected:
        if id(module) not in replaced:
            replaced[id(module)] = FP8Linear.from_linear(module, **options, **fast_options)
        _set_submodule(model, name, replaced[id(module)])
    return model


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def unconvert(model: nn.Module) -> nn.Module:
    """Swap every FP8Linear back to ``nn.Linear`` (or ``Conv1D``), sharing its Parameters."""
    replaced: dict[int, nn.Module] = {}
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if not isinstance(module, FP8Linear):
            continue
        if module.master is not None:
            raise ValueError(f"layer {name!r} stores its weight as a {module.master} master; "
                             "unconvert needs the original Parameter (convert without "
                             "store_master)")
        if id(module) not in replaced:
            w = module.weight
            if module.weight_layout == "out_in":
                new = nn.Linear(module.in_features, module.out_features,
                                bias=module.bias is not None, device="meta", dtype=w.dtype)
            else:
                from transformers.pytorch_utils import Conv1D

                new = Conv1D(module.out_features, module.in_features)
            new.weight, new.bias = w, module.bias
            replaced[id(module)] = new
        if name == "":
            raise ValueError("unconvert needs a model that contains the FP8Linear, not the layer")
        _set_submodule(model, name, replaced[id(module)])
    return model


def _fp8_layers(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, FP8Linear)]


def fp8_stats(model: nn.Module) -> dict[str, dict[str, dict]]:
    """``{layer name: {role: {overflow_rate, underflow_rate, overflow_casts, scale, ...}}}``.

    Roles are ``input``, ``weight``, ``grad_output`` and ``wgrad`` (when FP8); rates are per
    element over all recorded casts, ``overflow_casts`` counts casts with any clamped entry.
    """
    return {name: layer.fp8_stats() for name, layer in _fp8_layers(model)}


def fp8_scaling_state(model: nn.Module) -> dict[str, dict]:
    """Every FP8 layer's scales and amax histories (JSON-serialisable), for an exact resume."""
    return {name: layer.fp8.state_dict() for name, layer in _fp8_layers(model)}


def load_fp8_scaling_state(model: nn.Module, state: dict[str, dict]) -> None:
    layers = dict(_fp8_layers(model))
    missing = sorted(set(state) ^ set(layers))
    if missing:
        raise KeyError(f"FP8 scaling state and model disagree on layers: {missing[:5]}")
    for name, s in state.items():
        layers[name].fp8.load_state_dict(s)

