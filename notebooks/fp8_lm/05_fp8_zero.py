# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version,-widgets,-varInspector
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # FP8-LM 5: sharding FP8 tensors with ZeRO
#
# Houwen Peng, Kan Wu, Yixuan Wei, Guoshuai Zhao, Yuxiang Yang, Ze Liu, Yifan Xiong, Ziyue
# Yang, Bolin Ni, Jingcheng Hu, Ruihang Li, Miaosen Zhang, Chen Li, Jia Ning, Ruizhe Wang,
# Zheng Zhang, Shuguang Liu, Joe Chau, Han Hu, Peng Cheng. *FP8-LM: Training FP8 Large
# Language Models.* arXiv:2310.18313, 2023.
# [arXiv:2310.18313](https://arxiv.org/abs/2310.18313)
#
# ZeRO splits the optimizer state, gradients and master weights of a model across the
# data-parallel GPUs. The usual way flattens every tensor into one buffer and cuts it into
# equal pieces, which slices tensors in two. An FP8 tensor is only meaningful with its scale,
# so FP8-LM keeps tensors whole instead (§2.3, Algorithm 1): sort them by size and give each
# to the GPU that holds the least so far. This notebook partitions the parameters of the
# paper's smallest model, GPT-125M (Table 1: width 768, 12 layers, 12 heads; built by the
# chapter's trainer, `repro.lm.train_gpt`, from its `"125m"` configuration), over 2 to 64
# ranks, compares the greedy whole-tensor partition with contiguous cuts, counts the scales
# that must travel, and measures the bytes per parameter each GPU keeps at MS-AMP's level O3
# against the paper's $1 + 6/N$ and its Table 8. Only shapes are needed, so the model is built
# on PyTorch's `meta` device (no memory, no weights) and the **ci** scale is the paper's own
# configuration.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/repro-companion/repro/blob/main/notebooks/fp8_lm/05_fp8_zero.ipynb)

# %%
import sys

if "google.colab" in sys.modules:  # Colab only: this book's release of repro
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "repro @ git+https://github.com/repro-companion/repro@v0.1.0"], check=True)

# %% tags=["parameters"]
SEED = 0
MODEL = "125m"  # ci = full: shapes only, the paper's GPT-125M costs nothing to build on "meta"
VOCAB = 50257
MAX_SEQ = 2048
WORLD_SIZES = [2, 4, 8, 16, 32, 64]
CLAIM_RANKS = 8
LEVEL = "O3"
REF_MODEL = "7b"  # the 7B model of Tables 5 and 8
REF_RANKS = 32

# %% tags=["parameters-full", "skip-execution"]
SEED = 0  # ours: shapes only, nothing here is random
MODEL = "125m"  # Table 1: GPT-125M (repro.lm.train_gpt.MODELS: d 768, 12 layers, 12 heads)
VOCAB = 50257  # MS-AMP-Examples: Megatron GPT with the GPT-2 BPE vocabulary
MAX_SEQ = 2048  # §4.3 (appendix): sequence length 2,048
WORLD_SIZES = [2, 4, 8, 16, 32, 64]  # Table 5: data parallelism 4 to 32 (ours: 2 to 64)
CLAIM_RANKS = 8  # ours: one 8-GPU node (the paper trains on 8-GPU NDv5 nodes, §3)
LEVEL = "O3"  # MS-AMP docs: O3 = O2 + FP8 ZeRO (FP8 weights, FP16 master, sharded)
REF_MODEL = "7b"  # Table 1: GPT-7B (d 4096, 32 layers, 32 heads)
REF_RANKS = 32  # Table 5: GPT-7B runs with TP 1, PP 1, DP 32

# %%
# %matplotlib inline
import re

import matplotlib.pyplot as plt
import torch

import repro
from repro import plotting, tables
from repro.fp8.memory import LAYOUTS, training_state_bytes
from repro.fp8.tensor import ScaledTensor
from repro.fp8.zero import meta_gpt, partition_report

device = repro.runtime.setup(seed=SEED)
print(f"torch {torch.__version__}, level {LEVEL}: {LAYOUTS[LEVEL]}")

# %% [markdown]
# ## GPT-125M, shapes only
#
# The paper's GPT is a Megatron-style decoder with rotary position embeddings. The chapter's
# trainer builds it as a Llama-style decoder (RoPE, RMSNorm, a SwiGLU MLP with the parameter
# count of GPT's 4× MLP, bias-free projections, the output layer tied to the embedding):
# `repro.fp8.zero.meta_gpt(MODEL)` calls the trainer's own `build_model` with its `"125m"`
# configuration under `torch.device("meta")`, so every parameter has a shape and a dtype but
# no storage.

# %%
model = meta_gpt(MODEL, VOCAB, MAX_SEQ)
embedding = model.get_input_embeddings().weight
linear = {n: m.weight for n, m in model.named_modules()
          if isinstance(m, torch.nn.Linear) and m.weight is not embedding}
everything = dict(model.named_parameters())  # tied weights appear once
total = sum(p.numel() for p in everything.values())
largest = max(linear.values(), key=lambda p: p.numel())
print(f"{total / 1e6:.1f} M parameters on {embedding.device}; {len(linear)} linear weights "
      f"({sum(p.numel() for p in linear.values()) / 1e6:.1f} M, the largest "
      f"{largest.numel() / 1e6:.2f} M entries), embedding {embedding.numel() / 1e6:.1f} M "
      f"({embedding.numel() / total:.0%} of the model)")
for n in list(linear)[:4]:
    print(f"  {n}: {tuple(linear[n].shape)}")

# %% [markdown]
# ## What each rank stores, per tensor
#
# At O3 every rank keeps the FP8 model weights it computes with, and ZeRO shards the rest: an
# FP16 master weight, an FP8 gradient, an FP8 first moment and an FP16 second moment, each
# with one fp32 scale per tensor. We read the bytes off real (one-element) tensors of each
# storage format rather than typing them in:

# %%
layout = LAYOUTS[LEVEL]
roles = {"master": layout.master_format, "grad": layout.grad_format,
         "exp_avg": layout.exp_avg_format, "exp_avg_sq": layout.exp_avg_sq_format}
probes = {role: ScaledTensor.from_float(torch.zeros(1), fmt) for role, fmt in roles.items()}
bytes_per_param = sum(p.payload.element_size() for p in probes.values())
scale_bytes = sum(p.nbytes - p.payload.element_size() for p in probes.values())
_ = tables.show([{"state": role, "format": p.fmt, "dtype": str(p.payload.dtype),
                  "payload (B / entry)": p.payload.element_size(),
                  "scale (B / tensor)": p.nbytes - p.payload.element_size()}
                 for role, p in probes.items()],
                caption=f"The sharded {LEVEL} state of one tensor, read off stored tensors")
print(f"sharded state: {bytes_per_param} B per parameter + {scale_bytes} B of scales per tensor")
sizes = {n: bytes_per_param * p.numel() for n, p in linear.items()}
sizes_all = {n: bytes_per_param * p.numel() for n, p in everything.items()}

# %% [markdown]
# ## Three ways to split the linear weights over the ranks
#
# * **greedy** (Algorithm 1): largest tensor first, each to the least-loaded rank; tensors
#   stay whole.
# * **contiguous**: ZeRO's default; flatten in model order and cut into $N$ equal pieces. It
#   balances perfectly but cuts tensors, and every piece needs its own scale (and the owners
#   of one tensor must agree on its amax).
# * **contiguous, whole**: the same order, but each tensor goes whole to the rank where it
#   starts: what you get if you keep tensors whole without sorting them.

# %%
SCHEMES = ["greedy", "contiguous", "contiguous_whole"]
reports = {(s, n): partition_report(sizes, n, s, scale_bytes=scale_bytes)
           for s in SCHEMES for n in WORLD_SIZES}
fig, ax = plotting.subplots(figsize=(7.5, 3.8))
width = 0.27
ranks = torch.arange(CLAIM_RANKS)
for i, scheme in enumerate(SCHEMES):
    rep = reports[(scheme, CLAIM_RANKS)]
    ax.bar((ranks + (i - 1) * width).tolist(), [b / 1e6 for b in rep.rank_bytes], width,
           label=f"{scheme} (max/mean {rep.imbalance:.3f})")
ax.axhline(reports[("greedy", CLAIM_RANKS)].mean_bytes / 1e6, color="k", ls="--", lw=1,
           label="mean")
ax.set_xticks(ranks.tolist())
ax.set_xlabel("rank")
ax.set_ylabel(f"sharded {LEVEL} state (MB)")
ax.set_ylim(0, None)
ax.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize=8)
ax.set_title(f"GPT-125M linear weights over {CLAIM_RANKS} ranks")
plt.show()

# %% [markdown]
# **Takeaway.** Sorting is what makes whole tensors balance: the greedy partition comes close
# to the contiguous cut's perfect balance without cutting anything (the max/mean ratios are in
# the legend), while keeping tensors whole in model order leaves some ranks well over the mean.
#
# How does this hold up as the number of ranks grows? Whole tensors cannot be shared out any
# finer than the largest one, and a fixed number of tensors cannot fill ever more ranks. We
# also partition *every* parameter with Algorithm 1, the embedding included:

# %%
greedy_all = {n: partition_report(sizes_all, n, "greedy", scale_bytes=scale_bytes)
              for n in WORLD_SIZES}
fig, ax = plotting.subplots()
for scheme in SCHEMES:
    ax.plot(WORLD_SIZES, [reports[(scheme, n)].imbalance for n in WORLD_SIZES], marker="o",
            label=f"{scheme}, linear weights")
ax.plot(WORLD_SIZES, [greedy_all[n].imbalance for n in WORLD_SIZES], marker="s", ls="--",
        color=plotting.PALETTE[0], label="greedy, every parameter")
ax.set_xscale("log", base=2)
ax.set_xticks(WORLD_SIZES, [str(n) for n in WORLD_SIZES])
ax.set_yscale("log", base=2)
ax.set_yticks([1, 1.5, 2, 4, 8, 16], ["1", "1.5", "2", "4", "8", "16"])
ax.set_xlabel("number of ranks N")
ax.set_ylabel("imbalance: max / mean bytes per rank")
ax.legend(fontsize=8)
ax.set_title("Whole tensors balance until a tensor outweighs a rank's share")
plt.show()
empty = {n: sum(b == 0 for b in reports[("greedy", n)].rank_bytes) for n in WORLD_SIZES}
print(f"largest linear weight: {sizes[max(sizes, key=sizes.get)] / 1e6:.1f} MB of state; "
      f"ranks left empty by greedy: {empty}")

# %% [markdown]
# **Takeaway.** Greedy stays close to even while the ranks are few, and degrades once the
# largest tensors (printed above) outweigh a rank's share; it is never worse than the
# unsorted whole-tensor split. With the embedding in the pool it
# is unbalanced early: the rank that owns that single tensor sets the maximum. That is one
# reason MS-AMP keeps embeddings and norms out of the FP8 partition (they stay in high
# precision and standard ZeRO splits them evenly).
#
# What travels besides the payloads: one scale per piece. Cutting tensors multiplies pieces,
# and a cut tensor's owners must first agree on one amax.

# %%
table = [{"N": n, "scheme": s, "imbalance (max / mean)": reports[(s, n)].imbalance,
          "max (MB)": reports[(s, n)].max_bytes / 1e6, "min (MB)": reports[(s, n)].min_bytes / 1e6,
          "tensors cut": reports[(s, n)].tensors_cut,
          "scales sent": reports[(s, n)].scales_communicated}
         for n in WORLD_SIZES for s in SCHEMES]
_ = tables.show(table, formats={"imbalance (max / mean)": "{:.3f}", "max (MB)": "{:.2f}",
                                "min (MB)": "{:.2f}"},
                caption=f"{LEVEL} state of the linear weights per rank, three partitions")

# %% [markdown]
# ## The claim
#
# The imbalance ratio of contiguous-whole to greedy at `CLAIM_RANKS` ranks. (That the greedy
# partition never cuts a tensor, so each FP8 tensor travels with exactly one scale, holds by
# construction; `tests/fp8/test_zero.py` checks it, and the "tensors cut" column shows it.)

# %%
balance_ratio = (reports[("contiguous_whole", CLAIM_RANKS)].imbalance
                 / reports[("greedy", CLAIM_RANKS)].imbalance)
repro.ledger.record("greedy_partition_balances", balance_ratio, N=CLAIM_RANKS,
                    greedy=reports[("greedy", CLAIM_RANKS)].imbalance,
                    contiguous_whole=reports[("contiguous_whole", CLAIM_RANKS)].imbalance,
                    tensors=len(sizes), model=MODEL)
print(f"contiguous-whole / greedy imbalance at N={CLAIM_RANKS}: {balance_ratio:.3f}")

# %% [markdown]
# ## Bytes per parameter per GPU: $1 + 6/N$
#
# With the sharded state split $N$ ways, each GPU keeps its 1-byte FP8 weight copy plus $6/N$
# bytes: the paper's O3 figure. `repro.fp8.memory.training_state_bytes` builds the whole
# state of the meta model (every parameter FP8-managed, as the formula assumes), partitions
# it with Algorithm 1 and counts bytes rank by rank. (A layout count: the trainer's O3 does
# not yet hold these bytes, see the chapter's ledger.)

# %%
memory_rows = []
for n in [1, *WORLD_SIZES]:
    state = training_state_bytes(model, LEVEL, n, device="meta")
    memory_rows.append({"N": n, "mean (B / param)": state.bytes_per_param,
                        "max (B / param)": state.max_bytes_per_param, "1 + 6/N": 1 + 6 / n})
_ = tables.show(memory_rows, formats={"mean (B / param)": "{:.4f}", "max (B / param)": "{:.4f}",
                                      "1 + 6/N": "{:.4f}"},
                caption=f"{LEVEL} training state per GPU, GPT-125M, Algorithm 1")

# %%
ns = [r["N"] for r in memory_rows]
fig, ax = plotting.subplots()
ax.plot(ns, [r["1 + 6/N"] for r in memory_rows], "k--", label="paper: 1 + 6/N")
ax.plot(ns, [r["mean (B / param)"] for r in memory_rows], "o", label="measured, mean over ranks")
ax.plot(ns, [r["max (B / param)"] for r in memory_rows], "s-", label="measured, most loaded rank")
ax.axhline(16, color="0.5", lw=1, label="fp32 AdamW: 16")
ax.set_xscale("log", base=2)
ax.set_yscale("log", base=2)
ax.set_yticks([1, 2, 4, 8, 16], ["1", "2", "4", "8", "16"])
ax.set_xticks(ns, [str(n) for n in ns])
ax.set_xlabel("number of data-parallel ranks N")
ax.set_ylabel(f"{LEVEL} training state per GPU (bytes / parameter)")
ax.legend(fontsize=8)
ax.set_title("GPT-125M at O3: 1 + 6/N on average, not on every GPU")
plt.show()

# %% [markdown]
# **Takeaway.** The mean follows $1 + 6/N$ (the scales add a few bytes per tensor; compare the
# table's columns). The most loaded GPU does not: from a few ranks on, the rank that owns the
# whole embedding keeps a floor of bytes per parameter that more ranks cannot lower.
#
# ## Beside the paper's Table 8
#
# Table 8 gives the measured GPU memory (minimum/maximum over GPUs, GB) of the paper's ZeRO
# runs; the chapter's `claims.yaml` holds those values (rows `zero_memory_*`). Those totals
# include activations and buffers, which a shape count cannot see; what we can compute is the
# O3 training state for the 7B model with the paper's 32-way data parallelism (Table 5: TP 1,
# PP 1).

# %%
claims = {c.id: c for c in repro.ledger.chapter_claims("fp8_lm").claims}
table_8 = []
for key, name in [("zero_memory_7b", "GPT-7B"), ("zero_memory_13b", "GPT-13B"),
                  ("zero_memory_175b", "GPT-175B")]:
    values = dict(re.findall(r"([\w-]+) ([\d.]+ / [\d.]+)", claims[key].paper_value))
    table_8.append({"model": name, **{f"{k} (GB, min / max)": v for k, v in values.items()}})
_ = tables.show(table_8, caption="Table 8 of the paper (from claims.yaml): GPU memory per GPU")
big = meta_gpt(REF_MODEL, VOCAB, MAX_SEQ)
state = training_state_bytes(big, LEVEL, REF_RANKS, device="meta")
big_embedding = big.get_input_embeddings().weight.numel()
print(f"our {REF_MODEL} GPT ({state.num_params / 1e9:.2f} B parameters, embedding "
      f"{big_embedding / 1e9:.2f} B), {LEVEL} over {REF_RANKS} ranks: "
      f"{state.bytes_per_param:.3f} B/param on average (1 + 6/{REF_RANKS} = "
      f"{1 + 6 / REF_RANKS:.3f}); training state per GPU {min(state.per_rank_bytes) / 1e9:.2f} "
      f"to {max(state.per_rank_bytes) / 1e9:.2f} GB")

# %% [markdown]
# At 7B the embedding is smaller than one rank's share, so the whole-tensor partition stays
# even: compare the spread of the training state across ranks (printed above) with Table 8's
# FP8-LM min/max gap at 7B. The state itself is a fraction of the GPU memory the paper
# measured; activations and buffers take most of the rest, which is why FP8-LM's memory saving
# at 7B (−29 % in Table 5) is far smaller than the 2.6× of the optimizer state alone.

# %% [markdown]
# ## Exercises
#
# 1. MS-AMP breaks ties between equal-sized tensors by `index mod P` rather than by input
#    order. Do the identical `mlp.up_proj` weights of the twelve layers land differently?
#    Does the imbalance change?
# 2. Run `partition_report(sizes_all, 8, "contiguous", scale_bytes=scale_bytes)`: how many
#    tensors does ZeRO's contiguous cut split when the embedding is included, and how many
#    scales travel?
# 3. Remove the embedding from the greedy pool and give it to standard ZeRO instead (split
#    evenly). Recompute the most loaded rank's bytes per parameter at 8 and 64 ranks.
# 4. Build the 175B model (`repro.fp8.zero.meta_gpt("175b")`) and partition one pipeline stage's
#    tensor-parallel shard (24 layers, each matrix divided by 8) over the paper's 4
#    data-parallel ranks. How even is it?

# %% [markdown]
# ## Claims
#
# The values this notebook recorded, next to the paper's (the chapter's `claims.yaml` holds
# the sources and checks; the book's status page collects every chapter).

# %%
repro.ledger.show()
