"""A tiny Llama for the LLM chapters (transformers ``LlamaForCausalLM``, random init).

Llama rather than GPT-2 because every Llama projection is a bias-free ``nn.Linear`` (GPT-2 uses
transformers' ``Conv1D``), which is what FP8 conversion and most PEFT-style code expect. The
defaults (d_model 128, 2 layers, 4 heads, MLP 336, untied lm_head) give 416k parameters with a
103-character vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["tiny_llama", "tiny_gpt2", "lm_loss"]


def tiny_llama(vocab_size: int, d_model: int = 128, n_layers: int = 2, n_heads: int = 4,
               mlp: int = 336, max_seq: int = 256, seed: int = 0,
               attn_implementation: str = "sdpa") -> nn.Module:
    """A randomly initialised ``LlamaForCausalLM`` (no download), deterministic in ``seed``.

    Multi-head attention (as many KV heads as heads), no biases, untied input embedding and
    lm_head, RoPE up to ``max_seq`` positions. The global RNG state is restored afterwards.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=d_model, intermediate_size=mlp,
        num_hidden_layers=n_layers, num_attention_heads=n_heads, num_key_value_heads=n_heads,
        max_position_embeddings=max_seq, tie_word_embeddings=False, attention_bias=False,
        mlp_bias=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
        attn_implementation=attn_implementation,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.train()


def tiny_gpt2(vocab_size: int, d_model: int = 64, n_layers: int = 2, n_heads: int | None = None,
              max_seq: int = 128, seed: int = 0, eos_token_id: int | None = None) -> nn.Module:
    """A randomly initialised ``GPT2LMHeadModel`` (no download), deterministic in ``seed``.

    GPT-2's own architecture (learned positions, pre-LayerNorm, GELU MLP of 4 x d_model, tied
    input embedding and lm_head) at toy size, for chapters that mirror a GPT-2 meta-model
    (ScalingFilter). ``n_heads`` defaults to one head per 32 channels; dropout is 0 so that
    scoring and training are deterministic. No pad token is set: padding is masked explicitly
    (:mod:`repro.lm.scoring`). The global RNG state is restored afterwards.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    n_heads = n_heads or max(1, d_model // 32)
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
    config = GPT2Config(
        vocab_size=vocab_size, n_positions=max_seq, n_embd=d_model, n_layer=n_layers,
        n_head=n_heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=eos_token_id, eos_token_id=eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    return model.train()


def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy; ``batch = (x, y)`` with ``y`` already shifted."""
    x, y = batch
    logits = model(input_ids=x).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
