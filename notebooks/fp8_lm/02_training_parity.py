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
# # FP8-LM 2: does an FP8 model train like an FP32 one?
#
# Houwen Peng, Kan Wu, Yixuan Wei, Guoshuai Zhao, Yuxiang Yang, Ze Liu, Yifan Xiong, Ziyue Yang,
# Bolin Ni, Jingcheng Hu, Ruihang Li, Miaosen Zhang, Chen Li, Jia Ning, Ruizhe Wang, Zheng Zhang,
# Shuguang Liu, Joe Chau, Han Hu, Peng Cheng. *FP8-LM: Training FP8 Large Language Models.*
# arXiv 2023. [arXiv:2310.18313](https://arxiv.org/abs/2310.18313)
#
# The paper's central result (Fig. 4, Table 2) is that GPT models from 7B to 175B parameters
# trained with FP8 follow the loss curve of BF16 training and end with the same zero-shot
# accuracy. This notebook runs the same comparison on a tiny Llama: one seed, one initial
# model, one data order, trained with
#
# * **FP32** everywhere (the reference),
# * **BF16** mixed precision (`torch.autocast`: bf16 matmuls, fp32 weights and AdamW states),
# * **FP8 O1**: every linear layer's three GEMMs read FP8 operands (`repro.fp8.convert`),
#   weight gradients cast to E4M3, the usual AdamW,
# * **FP8 O2**: O1 plus the FP8 optimizer with precision decoupling (`FP8AdamW`: FP16 master
#   weights with a scale, E4M3 first moment, FP16 second moment).
#
# At **ci** scale a 110k-parameter model trains for 200 steps on one CPU thread; the FP8 runs
# are emulated (cast to real `float8` tensors, matmul in fp32), so they show the numerics, not
# the speed. The BF16 run is off at ci: this CPU has no bf16 matrix units and runs bf16
# matmuls about 20× slower than fp32 (turn it on with `-p RUN_BF16 True`, or at the local scale).
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/repro-companion/repro/blob/main/notebooks/fp8_lm/02_training_parity.ipynb)

# %%
import sys

if "google.colab" in sys.modules:  # Colab only: this book's release of repro
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "repro @ git+https://github.com/repro-companion/repro@v0.1.0"], check=True)

# %% tags=["parameters"]
SEED = 0
D_MODEL = 64  # ci: a 110k-parameter Llama, 200 steps, about a minute on one thread
N_LAYERS = 2
N_HEADS = 4
MLP = 168
BATCH = 8
SEQ_LEN = 64
STEPS = 200
LR = 1e-3
WARMUP = 20
WEIGHT_DECAY = 0.1
VAL_BATCHES = 4
LAST = 50
RUN_BF16 = False  # bf16 matmuls are ~20x slower than fp32 on a CPU without bf16 units
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
VAL_BATCHES = 8
LAST = 50
RUN_BF16 = True
SMOOTH = 20

# %% tags=["parameters-full", "skip-execution"]
SEED = 0  # (ours)
D_MODEL = 4096  # Table 1: GPT-7B, d_model 4096
N_LAYERS = 32  # Table 1: GPT-7B, 32 layers
N_HEADS = 32  # Table 1: GPT-7B, 32 heads
MLP = 11008  # SwiGLU 8/3 x d_model, rounded to 256 (repro.lm.train_gpt "7b": 12 d^2 per layer as GPT)
BATCH = 2048  # Table 1: 4M tokens per batch = 2048 sequences of 2048
SEQ_LEN = 2048  # §3.1: sequence length 2048
STEPS = 25_000  # Table 1: 100B tokens / 4M tokens per step
LR = 3e-4  # Table 1: GPT-7B learning rate
WARMUP = 1000  # §3.1: 1,000 warm-up iterations
WEIGHT_DECAY = 0.1  # §3.1: AdamW weight decay 0.1
VAL_BATCHES = 100  # (ours)
LAST = 1000  # (ours: the last 4B tokens)
RUN_BF16 = True  # Fig. 4 / Table 2: BF16 is the paper's baseline
SMOOTH = 100  # (ours)

# %%
# %matplotlib inline
import torch

import repro
from repro import plotting
from repro.bench import format_table
from repro.fp8 import FP8AdamW, convert, fp8_stats
from repro.lm import CharTokenizer, batch_at, lm_loss, pydoc_text, tiny_llama, train_val_split
from repro.lm.train_gpt import param_groups
from repro.train import TrainConfig, fit

device = repro.runtime.setup(seed=SEED)
print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {device}")

# %% [markdown]
# ## Data and model
#
# Character-level text: Python's own documentation (`pydoc_data.topics`, shipped with
# CPython), 90 % for training and the last 10 % for validation. The batch of step $k$ is a
# pure function of $(k, \text{seed})$, so every run below sees exactly the same batches in the
# same order, and every run starts from the same initial weights.

# %%
text = pydoc_text()
tokenizer = CharTokenizer.fit(text)
train_ids, val_ids = train_val_split(torch.tensor(tokenizer.encode(text)))
val_batches = [batch_at(val_ids, i, BATCH, SEQ_LEN, seed=SEED) for i in range(VAL_BATCHES)]
print(f"{len(train_ids):,} training and {len(val_ids):,} validation characters, "
      f"vocabulary {tokenizer.vocab_size}")


def new_model():
    return tiny_llama(tokenizer.vocab_size, d_model=D_MODEL, n_layers=N_LAYERS,
                      n_heads=N_HEADS, mlp=MLP, max_seq=SEQ_LEN, seed=SEED).to(device)


def batch_fn(step):
    return batch_at(train_ids, step, BATCH, SEQ_LEN, seed=SEED)


def val_loss(model):
    return {"val_loss": sum(float(lm_loss(model, b)) for b in val_batches) / len(val_batches)}


print(f"{sum(p.numel() for p in new_model().parameters()):,} parameters")

# %% [markdown]
# ## Four precisions
#
# Every run uses the same `TrainConfig` (AdamW β = (0.9, 0.95), weight decay 0.1 on matrices,
# linear warm-up, cosine decay to 10 % of the peak learning rate: the paper's recipe, §3.1).
#
# * **BF16** wraps the loss in `torch.autocast(dtype=torch.bfloat16)`; weights, gradients and
#   AdamW states stay fp32, as in Megatron's BF16 training.
# * **FP8 O1** calls `convert(model, "O1")`, which swaps every `nn.Linear` (the lm_head too) for
#   an `FP8Linear` sharing its parameters: inputs and weights E4M3, output gradients E5M2
#   (delayed scaling, history 16, for inputs and output gradients; just-in-time for weights),
#   weight gradients re-cast to E4M3. The optimizer is torch's AdamW, so the weights
#   themselves stay fp32 here (MS-AMP's O1 keeps them in FP16 with a scale; notebook 3 shows
#   that this changes nothing).
# * **FP8 O2** adds `FP8AdamW.from_level(..., "O2")` for the FP8 layers' weights: FP16 master
#   with a per-tensor scale, E4M3 first moment, FP16 second moment, E4M3 gradients. As in
#   MS-AMP, the parameters that are not FP8 linear weights (embedding, norms) keep FP32 AdamW
#   states, through the parameter groups of `repro.lm.train_gpt.param_groups` (the groups the
#   full-scale trainer uses).

# %%
def bf16_loss(model, batch):
    with torch.autocast(device.type, dtype=torch.bfloat16):
        return lm_loss(model, batch)


def train(precision):
    model, loss_fn, optimizer = new_model(), lm_loss, None
    if precision == "BF16":
        loss_fn = bf16_loss
    if precision.startswith("FP8"):
        convert(model, precision.split()[-1])
    if precision == "FP8 O2":
        groups = param_groups(model, WEIGHT_DECAY, fp8=True)  # FP8 weights first, rest fp32
        optimizer = FP8AdamW.from_level(groups, "O2", lr=LR, betas=(0.9, 0.95))
    config = TrainConfig(steps=STEPS, lr=LR, warmup_steps=WARMUP, weight_decay=WEIGHT_DECAY,
                         betas=(0.9, 0.95), desc=precision)
    history = fit(model, loss_fn, batch_fn, config, optimizer=optimizer, eval_fn=val_loss,
                  device=device)
    return model, history


PRECISIONS = ["FP32", *(["BF16"] if RUN_BF16 else []), "FP8 O1", "FP8 O2"]
models, histories = {}, {}
for precision in PRECISIONS:
    models[precision], histories[precision] = train(precision)

# %% [markdown]
# ## Loss curves

# %%
steps = list(range(STEPS))
fig, (ax_loss, ax_gap) = plotting.subplots(1, 2)
plotting.curves(ax_loss, {p: (steps, h.loss) for p, h in histories.items()},
                xlabel="step", ylabel=f"training loss (moving average of {SMOOTH})",
                title="same seed, same batches", smooth_window=SMOOTH)
reference = plotting.smooth(histories["FP32"].loss, SMOOTH)
for i, (p, h) in enumerate(histories.items()):
    if p != "FP32":
        gap = [a - b for a, b in zip(plotting.smooth(h.loss, SMOOTH), reference)]
        ax_gap.plot(steps, gap, label=f"{p} − FP32", color=plotting.PALETTE[i])
band = [0.02 * r for r in reference]  # the claim's bound: 2 % of the FP32 loss
ax_gap.fill_between(steps, [-b for b in band], band, color="0.92", label="±2 % of FP32 loss")
ax_gap.axhline(0, color="0.3", lw=0.8)
ax_gap.set_xlabel("step")
ax_gap.set_ylabel("loss difference to FP32 (smoothed)")
ax_gap.set_title("gap to FP32")
ax_gap.legend()
fig.tight_layout()

# %% [markdown]
# **Takeaway:** the FP8 curves lie on top of the FP32 curve; their difference to it wanders by
# a few thousandths, far inside the ±2 % band, through warm-up and decay alike.
#
# The final numbers: the mean training loss over the last `LAST` steps and the validation
# loss at the end, each as a difference to FP32.

# %%
fp32_last, fp32_val = histories["FP32"].last(LAST), histories["FP32"].evals[-1]["val_loss"]
rows = []
for p, h in histories.items():
    last, val = h.last(LAST), h.evals[-1]["val_loss"]
    rows.append({"precision": p, f"last-{LAST} loss": last, "Δ": last - fp32_last,
                 "relative Δ %": 100 * (last - fp32_last) / fp32_last, "val loss": val,
                 "Δ val": val - fp32_val, "ms / step": 1000 * h.seconds / STEPS,
                 "skipped steps": h.skipped_steps})
print(format_table(rows))

# %% [markdown]
# The gap is a small fraction of a per cent, the same order as the paper's 7B gap on
# zero-shot accuracy (58.0 FP8 vs 58.4 BF16, Table 2). How small is small? Changing the seed
# of the FP32 run alone (initial weights and batches) moves its last-50 loss by about 0.05
# (try `-p SEED 1`), more than ten times what FP8 does to a fixed seed. The gap is not
# always this small: at the local scale (d = 128, 400 steps) we measured about 1 % for both
# FP8 levels (BF16: 0.03 %), still inside the claim's 2 %, and it grows with the learning
# rate (exercise 1). The time column is a reminder that this is emulation:
# each FP8 cast is an extra pass over the data on a CPU, so FP8 runs *slower* here; the
# speed-up is a property of FP8 tensor cores (see the chapter's GPU benchmark).

# %%
gap = {p: (histories[p].last(LAST) - fp32_last) / fp32_last for p in ("FP8 O1", "FP8 O2")}
val_gap = {p: histories[p].evals[-1]["val_loss"] - fp32_val for p in ("FP8 O1", "FP8 O2")}
context = dict(fp32_last=fp32_last, last_steps=LAST, steps=STEPS, d_model=D_MODEL, seed=SEED)
repro.ledger.record("fp8_o1_matches_fp32_loss", gap["FP8 O1"], val_gap=val_gap["FP8 O1"],
                    **context)
repro.ledger.record("fp8_o2_matches_fp32_loss", gap["FP8 O2"], val_gap=val_gap["FP8 O2"],
                    **context)

# %% [markdown]
# ## What the FP8 layers went through
#
# Each `FP8Linear` counts, per tensor role, how many entries overflowed (were clipped to the
# format's maximum) or underflowed (became zero), and in how many casts at least one entry
# was clipped. Here are the counts of the O2 run, layer by layer:

# %%
stats = fp8_stats(models["FP8 O2"])
rows = []
for layer, roles in stats.items():
    rows.append({
        "layer": layer.replace("model.layers.", "L").replace("model.", ""),
        "input clipped casts": f"{roles['input']['overflow_casts']}/{roles['input']['casts']}",
        "input underflow %": 100 * roles["input"]["underflow_rate"],
        "grad clipped casts": (f"{roles['grad_output']['overflow_casts']}/"
                               f"{roles['grad_output']['casts']}"),
        "grad overflow %": 100 * roles["grad_output"]["overflow_rate"],
        "grad underflow %": 100 * roles["grad_output"]["underflow_rate"],
        "wgrad underflow %": 100 * roles["wgrad"]["underflow_rate"],
    })
print(format_table(rows))

# %% [markdown]
# The delayed scale of the activations (E4M3, history 16) almost never clips; the output
# gradients (E5M2) grow during training and clip in a few per cent of their casts, but each
# time only a handful of entries. Underflow is confined to the smallest entries and stays a
# small fraction. FP8 training works at this scale because the per-tensor scales keep nearly
# every entry inside the formats' windows — notebook 1 shows what happens when they do not.
#
# ## Exercises
#
# 1. Rerun with `-p LR 0.003`. With a three times larger learning rate the gap between FP8
#    and FP32 grows (we measured a few per cent for seed 0). Which layer's clipped casts
#    grow most? Try `convert(model, level, history_len=1)` and `scaling="jit"` to see
#    whether the scaling policy is the cause.
# 2. Keep the output layer in high precision with `convert(model, level, skip=["lm_head"])`
#    (MS-AMP lets a layer opt out with `use_fp32_linear`). Does the gap change?
# 3. Rerun with `-p SEED 1` and compare the FP8 gaps with the gap between the two seeds'
#    FP32 runs. How many seeds would you need before claiming that FP8 is worse at all?
# 4. Turn on `-p RUN_BF16 True` (slow on a CPU). Is BF16 autocast closer to FP32 than FP8 O1?

# %% [markdown]
# ## Claims
#
# The values this notebook recorded, next to the paper's (the chapter's `claims.yaml` holds the
# sources and checks; the book's status page collects every chapter).

# %%
repro.ledger.show()
