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
# # FP8-LM 3: an FP8 optimizer, and which states can take eight bits
#
# Houwen Peng, Kan Wu, Yixuan Wei, Guoshuai Zhao, Yuxiang Yang, Ze Liu, Yifan Xiong, Ziyue Yang,
# Bolin Ni, Jingcheng Hu, Ruihang Li, Miaosen Zhang, Chen Li, Jia Ning, Ruizhe Wang, Zheng Zhang,
# Shuguang Liu, Joe Chau, Han Hu, Peng Cheng. *FP8-LM: Training FP8 Large Language Models.*
# arXiv 2023. [arXiv:2310.18313](https://arxiv.org/abs/2310.18313)
#
# Mixed-precision Adam keeps 16 bytes per parameter: FP32 master weights, FP32 gradients and
# two FP32 moments. FP8-LM's optimizer (§2.2) keeps 6: master weights in **FP16 with a
# per-tensor scale**, gradients and the first moment in **FP8**, the second moment in
# **FP16**. The paper calls this *precision decoupling*: each state gets the precision its
# role needs, and the ablation of Table 6 / Fig. 8 shows what goes wrong with less. This
# notebook reruns that ablation on a tiny Llama with `repro.fp8.FP8AdamW`, whose states are
# real low-precision tensors, and then measures the bytes per parameter that the training
# process really holds at every optimization level, from its live tensors. To isolate the
# optimizer, every GEMM of the ablation is FP32. At **ci** scale each of the five runs trains
# a tiny model for `STEPS` steps on one CPU thread.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/repro-companion/repro/blob/main/notebooks/fp8_lm/03_precision_decoupling.ipynb)

# %%
import sys

if "google.colab" in sys.modules:  # Colab only: this book's release of repro
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "repro @ git+https://github.com/repro-companion/repro@v0.1.0"], check=True)

# %% tags=["parameters"]
SEED = 0
D_MODEL = 64  # ci: a 110k-parameter Llama, five runs of 200 steps
N_LAYERS = 2
N_HEADS = 4
MLP = 168
BATCH = 8
SEQ_LEN = 64
STEPS = 200
LR = 1e-3
WARMUP = 20
WEIGHT_DECAY = 0.1
LAST = 50
VARIANTS = ["fp32", "paper", "bf16_master", "e4m3_master", "e4m3_v"]
WORLD_SIZES = [8, 64]
SMOOTH = 10

# %% tags=["parameters-local", "skip-execution"]
SEED = 0
D_MODEL = 128  # local: the default tiny_llama, 416k parameters
N_LAYERS = 2
N_HEADS = 4
MLP = 336
BATCH = 16
SEQ_LEN = 64
STEPS = 400
LR = 1e-3
WARMUP = 20
WEIGHT_DECAY = 0.1
LAST = 50
VARIANTS = ["fp32", "paper", "bf16_master", "e4m3_master", "e4m3_v", "e5m2_v"]
WORLD_SIZES = [8, 64]
SMOOTH = 20

# %% tags=["parameters-full", "skip-execution"]
SEED = 0  # (ours)
D_MODEL = 768  # Table 6 ablates GPT-125M; Table 1: d_model 768
N_LAYERS = 12  # Table 1: GPT-125M, 12 layers
N_HEADS = 12  # Table 1: GPT-125M, 12 heads
MLP = 2048  # SwiGLU 8/3 x d_model (repro.lm.train_gpt "125m": 12 d^2 per layer as GPT)
BATCH = 512  # Table 1: 1M tokens per batch = 512 sequences of 2048
SEQ_LEN = 2048  # §3.1: sequence length 2048
STEPS = 100_000  # Table 1: 100B tokens / 1M per step (Table 6's own length is not stated)
LR = 6e-4  # Table 1: GPT-125M learning rate
WARMUP = 1000  # §3.1: 1,000 warm-up iterations
WEIGHT_DECAY = 0.1  # §3.1: AdamW weight decay 0.1
LAST = 1000  # (ours)
VARIANTS = ["fp32", "paper", "bf16_master", "e4m3_master", "e4m3_v", "e5m2_v"]  # Table 6 rows
WORLD_SIZES = [8, 64]  # (ours: O3's ZeRO over 8 and 64 GPUs)
SMOOTH = 100  # (ours)

# %%
# %matplotlib inline
import math

import torch

import repro
from repro import plotting, tables
from repro.fp8 import FP8AdamW, convert
from repro.fp8.memory import bytes_per_param_table, held_bytes, training_state_bytes
from repro.fp8.optim import param_groups
from repro.lm import CharTokenizer, batch_at, lm_loss, pydoc_text, tiny_llama, train_val_split
from repro.train import TrainConfig, fit

device = repro.runtime.setup(seed=SEED)
print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {device}")

# %% [markdown]
# ## The ablation
#
# Each variant is a triple of storage formats for (master weights, first moment $m$, second
# moment $v$). "fp16" always carries a per-tensor power-of-two scale, as in MS-AMP; "bf16"
# has none (its range is fp32's). The first two rows are the paper's reference and its
# choice; every other row changes one format of the paper's choice:
#
# | variant | master | $m$ | $v$ | Table 6 |
# |---|---|---|---|---|
# | `fp32` | FP32 | FP32 | FP32 | #0 (the FP32 reference) |
# | `paper` | FP16 + scale | E4M3 + scale | FP16 + scale | #2a |
# | `bf16_master` | BF16 | E4M3 + scale | FP16 + scale | #2b |
# | `e4m3_master` | E4M3 + scale | E4M3 + scale | FP16 + scale | #3 |
# | `e4m3_v` | FP16 + scale | E4M3 + scale | E4M3 + scale | #4 |
# | `e5m2_v` (local and full) | FP16 + scale | E4M3 + scale | E5M2 + scale | (ours) |
#
# Every step decodes the states to fp32, does the AdamW arithmetic of `torch.optim.AdamW`,
# re-encodes each state with a fresh scale, and rounds the parameter in place to the master
# format (for the ablation the parameters stay fp32 tensors holding exactly the decoded
# master: the numerics of each format; the memory section below stores them for real).
# We apply the formats to every parameter; MS-AMP applies them to the linear weights only,
# which hold most of the parameters (the share is printed below).

# %%
VARIANT_FORMATS = {  # (master, exp_avg, exp_avg_sq)
    "fp32": ("fp32", "fp32", "fp32"),
    "paper": ("fp16", "e4m3", "fp16"),
    "bf16_master": ("bf16", "e4m3", "fp16"),
    "e4m3_master": ("e4m3", "e4m3", "fp16"),
    "e4m3_v": ("fp16", "e4m3", "e4m3"),
    "e5m2_v": ("fp16", "e4m3", "e5m2"),
}

text = pydoc_text()
tokenizer = CharTokenizer.fit(text)
train_ids, _ = train_val_split(torch.tensor(tokenizer.encode(text)))


def train(variant):
    master, exp_avg, exp_avg_sq = VARIANT_FORMATS[variant]
    model = tiny_llama(tokenizer.vocab_size, d_model=D_MODEL, n_layers=N_LAYERS,
                       n_heads=N_HEADS, mlp=MLP, max_seq=SEQ_LEN, seed=SEED).to(device)
    groups = param_groups(model, WEIGHT_DECAY)  # weight decay on matrices only
    optimizer = FP8AdamW(groups, lr=LR, betas=(0.9, 0.95), master_format=master,
                         exp_avg_format=exp_avg, exp_avg_sq_format=exp_avg_sq)
    config = TrainConfig(steps=STEPS, lr=LR, warmup_steps=WARMUP, betas=(0.9, 0.95),
                         desc=variant)
    history = fit(model, lm_loss, lambda step: batch_at(train_ids, step, BATCH, SEQ_LEN,
                                                        seed=SEED),
                  config, optimizer=optimizer, device=device)
    return model, optimizer, history


runs = {variant: train(variant) for variant in VARIANTS}
histories = {variant: history for variant, (_, _, history) in runs.items()}

# %% [markdown]
# ## Loss curves

# %%
steps = list(range(STEPS))
fig, (ax_loss, ax_gap) = plotting.subplots(1, 2)
plotting.curves(ax_loss, {v: (steps, h.loss) for v, h in histories.items()}, xlabel="step",
                ylabel=f"training loss (moving average of {SMOOTH})",
                title="FP32 GEMMs, optimizer states varied", smooth_window=SMOOTH)
reference = plotting.smooth(histories["fp32"].loss, SMOOTH)
for i, (v, h) in enumerate(histories.items()):
    if v != "fp32":
        gap = [a - b for a, b in zip(plotting.smooth(h.loss, SMOOTH), reference)]
        ax_gap.plot(steps, gap, label=v, color=plotting.PALETTE[i])
ax_gap.axhline(0, color="0.3", lw=0.8)
ax_gap.set_yscale("symlog", linthresh=0.01)
ax_gap.set_xlabel("step")
ax_gap.set_ylabel("loss − loss of fp32 states (symlog)")
ax_gap.set_title("gap to the FP32 reference")
ax_gap.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# **Takeaway:** the paper's choice (`paper`) is indistinguishable from FP32 states. A BF16
# master without a scale trails it visibly; an FP8 master barely trains at all; an FP8 second
# moment costs a clear gap. The order is the paper's (Fig. 8).
#
# The numbers, as differences of the mean training loss over the last `LAST` steps:

# %%
ref, paper = histories["fp32"].last(LAST), histories["paper"].last(LAST)
rows = []
for v, h in histories.items():
    opt = runs[v][1]
    rows.append({"variant": v, "master / m / v": " / ".join(VARIANT_FORMATS[v]),
                 f"last-{LAST} loss": h.last(LAST), "Δ vs fp32": h.last(LAST) - ref,
                 "Δ vs paper": h.last(LAST) - paper,
                 "non-finite steps": sum(not math.isfinite(x) for x in h.loss),
                 "skipped steps": int(opt.skipped_steps),
                 "diverged": h.diverged(LAST, margin=0.05)})
_ = tables.show(rows, formats={f"last-{LAST} loss": "{:.4f}", "Δ vs fp32": "{:+.4f}",
                               "Δ vs paper": "{:+.4f}"},
                caption=f"Table 6 / Fig. 8 ablation: mean training loss over the last {LAST} steps")

# %% [markdown]
# Why these results? Adam's update is roughly $\text{lr} \cdot m / \sqrt{v}$, of the order of
# the learning rate for every entry; what each state can tolerate follows from that.
#
# * **Master weights** receive that update. With E4M3's 3 mantissa bits the gap between
#   neighbouring values is 7–12.5 % of the value, so an update of $10^{-3}$ on a weight of
#   $0.02$ (5 %) is rounded away most of the time, and always once the weights grow: the
#   model stalls. BF16 (8 bits) resolves 0.4 %; FP16 (11 bits) with a scale 0.05 %, which is
#   why only FP16 matches FP32. The norm gains, all near 1, are the extreme case: a step of
#   $10^{-3}$ is below BF16's resolution at 1 (0.4 %), so in BF16 they never move.
# * **The first moment** only sets the update's direction and rough size, which 3 mantissa
#   bits carry well.
# * **The second moment** is a square: it spans twice the binades of the gradient. E4M3 covers
#   18 binades, so entries of $v$ more than $2^{18}$ below the tensor's largest flush to zero,
#   while the matching entries of $m$ do not — and for them the update becomes $m / \epsilon$.
#
# We can count that last effect in the `e4m3_v` optimizer after training: the entries whose
# stored $v$ is zero while the stored $m$ is not.

# %%
if "e4m3_v" in runs:
    optimizer = runs["e4m3_v"][1]
    flushed = total = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state[p]
            v_zero = state["exp_avg_sq"].payload.float() == 0
            m_nonzero = state["exp_avg"].payload.float() != 0
            flushed += int((v_zero & m_nonzero).sum())
            total += p.numel()
    print(f"E4M3 second moment: {flushed:,} of {total:,} entries ({100 * flushed / total:.2f} %) "
          "have v = 0 but m != 0; their update is m / eps")

# %% [markdown]
# Does this reproduce the paper's four findings? The first three clearly. The paper says the
# FP8 second moment makes training *diverge*; here it costs the loss gap in the table's
# `e4m3_v` row but the loss keeps falling. With a fresh just-in-time scale every step (as
# MS-AMP's optimizer does), only the share of entries printed above flushes, too few to blow
# up a tiny model in a few hundred steps. Whether it diverges at GPT-125M over 100B tokens, as in the paper,
# a CPU cannot tell; the ledger records 0 for "diverged" rather than a looser test.

# %%
repro.ledger.record("fp16_scaled_master_matches_fp32", paper - ref, paper=paper, fp32=ref,
                    last_steps=LAST, steps=STEPS, lr=LR, seed=SEED)
repro.ledger.record("bf16_master_worse_than_fp16_scaled",
                    histories["bf16_master"].last(LAST) - paper, last_steps=LAST, seed=SEED)
repro.ledger.record("fp8_master_degrades", histories["e4m3_master"].last(LAST) - paper,
                    last_steps=LAST, seed=SEED)
repro.ledger.record("fp8_second_moment_fails",
                    int(histories["e4m3_v"].diverged(LAST, margin=0.05)),
                    gap_vs_paper=histories["e4m3_v"].last(LAST) - paper,
                    non_finite=sum(not math.isfinite(x) for x in histories["e4m3_v"].loss),
                    steps=STEPS, lr=LR, seed=SEED)
repro.ledger.record("fp8_second_moment_degrades", histories["e4m3_v"].last(LAST) - paper,
                    last_steps=LAST, seed=SEED)

# %% [markdown]
# ## Bytes per parameter: what the process holds
#
# The paper's 6 bytes are a claim about memory, so we measure memory: after one backward and
# one optimizer step, `repro.fp8.memory.held_bytes(model, optimizer)` walks every live tensor
# the model and the optimizer hold (parameters, gradients, optimizer states, scales, buffers),
# counts each storage once, and attributes to the FP8 linear weights what belongs to them.
# Beside it, `training_state_bytes` is the paper's accounting (dtypes × shapes of the layout,
# MS-AMP's "hybrid" scope: only linear weights in FP8 formats). Each level is measured twice:
# with the linear weights as ordinary fp32 Parameters (`convert(model, level)`, what a
# drop-in FP8 GEMM gives) and with the weights stored as the level's master
# (`convert(model, level, store_master=True)`: an FP16 payload with its scale at O1/O2, an
# E4M3 payload at O3 with the FP16 master in the optimizer; FP8 gradients kept as FP8).

# %%
def held_after_one_step(level, store_master):
    model = tiny_llama(tokenizer.vocab_size, d_model=D_MODEL, n_layers=N_LAYERS,
                       n_heads=N_HEADS, mlp=MLP, max_seq=SEQ_LEN, seed=SEED)
    if level == "fp32":
        optimizer = torch.optim.AdamW(param_groups(model, WEIGHT_DECAY), lr=LR)
    else:
        convert(model, level, store_master=store_master)
        optimizer = FP8AdamW.from_level(param_groups(model, WEIGHT_DECAY, fp8=True), level,
                                        lr=LR)
    lm_loss(model, batch_at(train_ids, 0, BATCH, SEQ_LEN, seed=SEED)).backward()
    optimizer.step()
    layout = training_state_bytes(model, level, scope="hybrid")
    return held_bytes(model, optimizer), layout


CASES = [("fp32", False), ("O1", False), ("O1", True), ("O2", False), ("O2", True),
         ("O3", False), ("O3", True)]
PAPER_FP8_WEIGHT = {"fp32": 16, "O1": 11, "O2": 6, "O3": 7}  # §2.2, MS-AMP levels; O3 at N = 1
held = {}
memory_rows = []
for level, stored in CASES:
    h, layout = held_after_one_step(level, stored)
    held[(level, stored)] = h
    memory_rows.append({
        "level": level, "linear weights stored as": (
            "fp32 Parameter" if not stored else "FP16 master + scale" if level != "O3"
            else "E4M3 + scale (FP16 master in the optimizer)"),
        "held, FP8 linear weights (B / param)": h.fp8_linear_bytes_per_param if level != "fp32"
        else float("nan"),
        "paper (B / param)": PAPER_FP8_WEIGHT[level],
        "held, whole model (B / param)": h.bytes_per_param,
        "layout, whole model (B / param)": layout.bytes_per_param,
    })
_ = tables.show(memory_rows, formats={c: "{:.3f}" for c in memory_rows[0] if "B / param" in c},
                caption="Bytes per parameter after one backward and one step: held (live "
                        "tensors) and the layout's accounting (hybrid scope)")
num_params = held[("O2", True)].num_params
linear_share = held[("O2", True)].fp8_linear_params / num_params
o2_before = held[("O2", False)].fp8_linear_bytes_per_param
o2_after = held[("O2", True)].fp8_linear_bytes_per_param
print(f"{num_params:,} parameters, {100 * linear_share:.1f} % in FP8 linear weights; "
      f"O2 FP8 linear weights hold {o2_before:.3f} B/param as fp32 Parameters, "
      f"{o2_after:.3f} B/param stored as FP16 masters")

# %%
fig, ax = plotting.subplots()
labels = [f"{r['level']}\n{'stored' if stored else 'fp32 param'}"
          for r, (_, stored) in zip(memory_rows, CASES)]
values = [held[c].fp8_linear_bytes_per_param if c[0] != "fp32" else held[c].bytes_per_param
          for c in CASES]
bars = ax.bar(range(len(CASES)), values, color=[plotting.PALETTE[int(s)] for _, s in CASES])
ax.bar_label(bars, fmt="%.2f", fontsize=7)
ax.scatter(range(len(CASES)), [PAPER_FP8_WEIGHT[lv] for lv, _ in CASES], marker="_", s=600,
           color="k", zorder=3, label="paper (§2.2; O3 at N = 1)")
ax.set_xticks(range(len(CASES)), labels, fontsize=8)
ax.set_xlabel("precision level, how the linear weights are stored")
ax.set_ylabel("bytes held per FP8 linear weight")
ax.set_title("measured from live tensors after one step")
ax.legend()
fig.tight_layout()

# %% [markdown]
# **Takeaway:** only storing the weights as the level's master realises the paper's count: with
# fp32 Parameters the process keeps fp32 weights and fp32 gradients beside the FP8 states, and
# holds far more than the layout says (first bars); stored as FP16 masters with E4M3
# gradients, O2's FP8 linear weights hold the paper's 6 bytes plus their scales (the exact
# values are in the table). The whole model holds more, because the embedding and the norms
# keep FP32 AdamW states (16 bytes), as in MS-AMP.
#
# The layout accounting for every level, once with every parameter in the level's formats
# ("all") and once as MS-AMP does it ("hybrid"), including O3's ZeRO over `WORLD_SIZES` ranks,
# which a single process cannot hold:

# %%
model = tiny_llama(tokenizer.vocab_size, d_model=D_MODEL, n_layers=N_LAYERS, n_heads=N_HEADS,
                   mlp=MLP, max_seq=SEQ_LEN, seed=SEED)
table = bytes_per_param_table(model, world_sizes=tuple(WORLD_SIZES))
_ = tables.show(table, formats={"bytes_per_param": "{:.3f}", "max_bytes_per_param": "{:.3f}"},
                caption="Layout accounting (dtypes × shapes), bytes per parameter")

# %%
repro.ledger.record("bytes_per_param_o2", o2_after, before_store_master=o2_before,
                    whole_model=held[("O2", True)].bytes_per_param,
                    layout_whole_model=memory_rows[4]["layout, whole model (B / param)"],
                    num_params=num_params, **held[("O2", True)].by_kind)

# %% [markdown]
# ## Exercises
#
# 1. Rerun with `-p LR 0.0001`. The updates are now ten times smaller relative to the weights;
#    how do the gaps of `bf16_master` and `e4m3_master` change, and why?
# 2. Add `"e5m2_v"` to `VARIANTS`. E5M2 has 32 binades, enough for a squared gradient; is it
#    enough in precision too? Compare it with `e4m3_v` and `paper`.
# 3. Give the E4M3 second moment a chance: add a variant with `exp_avg_sq_format="e4m3"` and
#    `eps=1e-6`. Does a larger epsilon tame the entries with $v = 0$?
# 4. Apply the formats to the linear weights only (MS-AMP's hybrid scope) by building the
#    parameter groups from `repro.fp8.memory.fp8_linear_weights(model)`, and rerun
#    `bf16_master`. Which part of its gap came from the norm gains?

# %% [markdown]
# ## Claims
#
# The values this notebook recorded, next to the paper's (the chapter's `claims.yaml` holds the
# sources and checks; the book's status page collects every chapter).

# %%
repro.ledger.show()
