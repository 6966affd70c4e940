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
# # FP8-LM 1: two 8-bit formats and how to scale a tensor into them
#
# Houwen Peng, Kan Wu, Yixuan Wei, Guoshuai Zhao, Yuxiang Yang, Ze Liu, Yifan Xiong, Ziyue Yang,
# Bolin Ni, Jingcheng Hu, Ruihang Li, Miaosen Zhang, Chen Li, Jia Ning, Ruizhe Wang, Zheng Zhang,
# Shuguang Liu, Joe Chau, Han Hu, Peng Cheng. *FP8-LM: Training FP8 Large Language Models.*
# arXiv 2023. [arXiv:2310.18313](https://arxiv.org/abs/2310.18313)
#
# Everything FP8-LM does rests on two facts from its appendix (App. A.1–A.2): an 8-bit float
# has either precision (**E4M3**, used for activations and weights) or range (**E5M2**, used
# for gradients), never both; and a tensor only fits into those few bits together with a
# per-tensor **scaling factor**. This notebook looks at both formats value by value, measures
# their rounding error, and then follows the real activations and gradients of a tiny Llama
# through a few dozen training steps to compare the two ways of choosing the scale:
# *just-in-time* (from the tensor being cast) and *delayed* (from the amax history of earlier
# steps, as MS-AMP and Transformer Engine do), with a synthetic activation spike thrown in.
# The formats part is exact at any scale; the **ci** scale trains a 110k-parameter model for
# 40 steps on one CPU thread.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/repro-companion/repro/blob/main/notebooks/fp8_lm/01_formats_scaling.ipynb)

# %%
import sys

if "google.colab" in sys.modules:  # Colab only: this book's release of repro
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "repro @ git+https://github.com/repro-companion/repro@v0.1.0"], check=True)

# %% tags=["parameters"]
SEED = 0
D_MODEL = 64  # ci: a 110k-parameter Llama
N_LAYERS = 2
N_HEADS = 4
MLP = 168
BATCH = 16
SEQ_LEN = 64
LR = 1e-3
WARMUP = 20
STEPS = 40  # ci: a few dozen steps of real tensors
SPIKE_STEP = 20  # after 20 steps a history of 16 is full
SPIKE_FACTOR = 10.0
HISTORIES = [1, 16, 1024]

# %% tags=["parameters-full", "skip-execution"]
SEED = 0  # (ours)
D_MODEL = 768  # Table 1: GPT-125M, d_model 768
N_LAYERS = 12  # Table 1: GPT-125M, 12 layers
N_HEADS = 12  # Table 1: GPT-125M, 12 heads
MLP = 2048  # SwiGLU 8/3 x d_model (repro.lm.train_gpt "125m": 12 d^2 per layer as GPT)
BATCH = 8  # (ours: 8 x 2048 tokens per step is enough to measure tensors)
SEQ_LEN = 2048  # §3.1: sequence length 2048
LR = 6e-4  # Table 1: GPT-125M learning rate
WARMUP = 1000  # §3.1: 1,000 warm-up iterations
STEPS = 2000  # (ours: past warm-up, so the history sees a settled model)
SPIKE_STEP = 1500  # (ours: well after the 1024-step history has filled)
SPIKE_FACTOR = 10.0  # (ours: an outlier step of 10x, the order of activation outliers in LLMs)
HISTORIES = [1, 16, 1024]  # MS-AMP code: history 16; TE DelayedScaling default: 1024

# %%
# %matplotlib inline
import torch

import repro
from repro import plotting, tables
from repro.fp8.formats import E4M3, E5M2, QuantStats, dequantize, quantize
from repro.fp8.probe import ScalingProbe
from repro.fp8.scaling import power_of_two_scale
from repro.lm import CharTokenizer, batch_at, lm_loss, pydoc_text, tiny_llama, train_val_split
from repro.train import TrainConfig, fit

device = repro.runtime.setup(seed=SEED)
FORMATS = {"E4M3": E4M3, "E5M2": E5M2}
print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {device}")

# %% [markdown]
# ## Two formats, one byte each
#
# An FP8 number is a sign bit, $e$ exponent bits and $m$ mantissa bits. E4M3 spends four bits
# on the exponent and three on the mantissa; E5M2 one more on the exponent and one fewer on the
# mantissa. The library decodes every bit pattern, so we can count what each format can say:

# %%
rows = []
for name, fmt in FORMATS.items():
    values = fmt.representable_values()
    rows.append({"format": name, "max": fmt.max, "min normal": fmt.min_normal,
                 "min subnormal": fmt.min_subnormal, "binades": round(fmt.binades, 1),
                 "positive values": int((values > 0).sum()), "has inf": fmt.has_inf})
_ = tables.show(rows, formats={"max": "{:,.0f}", "min normal": "{:.3g}",
                               "min subnormal": "{:.3g}", "binades": "{:.1f}"},
                caption="The two FP8 formats, decoded from every bit pattern")

# %% [markdown]
# The paper's appendix table says the same: E4M3 reaches 448, E5M2 57,344 (and ±inf, which
# E4M3 does not have). A *binade* is one power of two; E5M2 covers 32 of them, E4M3 18. Both
# have about 125 positive values, so what E5M2 gains in range it pays for in density.
# Where do those values sit?

# %%
fig, (ax_grid, ax_gap) = plotting.subplots(1, 2)
for row, (name, fmt) in enumerate(FORMATS.items()):
    v = fmt.representable_values()
    v = v[v > 0]
    normal = v >= fmt.min_normal
    ax_grid.eventplot([v[normal].tolist(), v[~normal].tolist()], lineoffsets=[row, row],
                      linelengths=0.7, colors=[plotting.PALETTE[row], "0.65"])
    gap = (v[1:] - v[:-1]) / v[1:]  # spacing to the next value, relative to it
    ax_gap.plot(v[1:], gap, ".-", ms=3, label=name)
ax_grid.set_xscale("log", base=2)
ax_grid.set_yticks([0, 1], list(FORMATS))
ax_grid.set_xlabel("positive value (log₂ axis; grey: subnormals)")
ax_grid.set_ylabel("format")
ax_grid.set_title("every positive FP8 value")
ax_gap.set_xscale("log", base=2)
ax_gap.set_yscale("log", base=2)
ax_gap.set_xlabel("value (log₂)")
ax_gap.set_ylabel("gap to the previous value / value")
ax_gap.set_title("relative spacing")
ax_gap.legend()
fig.tight_layout()

# %% [markdown]
# **Takeaway:** both formats are logarithmic rulers. Between normals, E4M3 puts 8 values in
# every binade (neighbours 12.5 % apart), E5M2 only 4 (25 % apart); below the smallest normal
# the subnormals thin out until the spacing reaches the value itself.
#
# ## Rounding error across magnitudes
#
# What does a cast cost? We sweep $2^{-20} \dots 2^{17}$ densely, cast with scale 1
# (`quantize` clamps to ±max first, so overflow saturates), decode, and plot the worst
# relative error $|\hat x - x| / x$ in each quarter-binade.

# %%
sweep = 2.0 ** torch.linspace(-20, 17, 200_001, dtype=torch.float64)
bins = torch.floor(torch.log2(sweep) * 4)  # quarter-binades
rel_err, worst_normal = {}, {}
for name, fmt in FORMATS.items():
    x = sweep.float()
    err = ((dequantize(quantize(x, fmt)).double() - sweep).abs() / sweep)
    rel_err[name] = torch.zeros(int(bins.max() - bins.min()) + 1, dtype=torch.float64)
    rel_err[name].scatter_reduce_(0, (bins - bins.min()).long(), err, "amax")
    normal = (sweep >= fmt.min_normal) & (sweep <= fmt.max)
    worst_normal[name] = float(err[normal].max())
centres = 2.0 ** ((torch.arange(len(rel_err["E4M3"])) + bins.min() + 0.5) / 4)

fig, ax = plotting.subplots()
for i, (name, fmt) in enumerate(FORMATS.items()):
    ax.plot(centres, rel_err[name].clamp(min=1e-4), label=name, color=plotting.PALETTE[i])
    for edge in (fmt.min_subnormal, fmt.min_normal, fmt.max):
        ax.axvline(edge, color=plotting.PALETTE[i], lw=0.6, ls=":")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("|x| (log₂ axis; dotted: min subnormal, min normal, max)")
ax.set_ylabel("worst relative rounding error")
ax.set_title("the error of one cast, scale 1")
ax.legend()
print({name: round(e, 4) for name, e in worst_normal.items()})

# %% [markdown]
# **Takeaway:** inside its normal range E4M3's worst error is $2^{-4}/(1+2^{-4}) = 5.9\,\%$,
# E5M2's $2^{-3}/(1+2^{-3}) = 11.1\,\%$ — about half. Outside the range both fail completely:
# values below half the smallest subnormal become 0 (error 1), values beyond the maximum are
# clipped. The usable window is what the scaling factor must move a tensor into.
#
# The paper's table lists "relative error" 0.111 ~ 0.0769 for E4M3 and 0.200 ~ 0.167 for E5M2;
# its upper figures are the spacing between neighbours relative to the larger one (twice the
# worst rounding error, as in the previous figure), so the ratio of the two formats is the same.

# %%
ratio = worst_normal["E4M3"] / worst_normal["E5M2"]
print(f"worst relative error of normals, E4M3 / E5M2 = {ratio:.3f} (paper: 0.111 / 0.200 = "
      f"{0.111 / 0.200:.3f})")
repro.ledger.record("e4m3_finer_than_e5m2", ratio, e4m3=worst_normal["E4M3"],
                    e5m2=worst_normal["E5M2"], sweep="2^-20..2^17, 200001 points")

# %% [markdown]
# ## Real tensors from a tiny Llama
#
# Which tensors need which window? We train a tiny Llama (`repro.lm.tiny_llama`, character
# level on Python's documentation) in ordinary FP32 and watch every `nn.Linear`: its input
# (an activation, cast to **E4M3** by an FP8 linear layer) and its output gradient (cast to
# **E5M2**). At each step we cast every watched tensor under four scaling policies, each with
# its own `ScalingState` per layer:
#
# * **just-in-time**: $s = 2^{\lfloor \log_2(\text{max}_{\text{fmt}} / \text{amax}(x)) \rfloor}$
#   from the tensor itself (an extra pass over the data before the cast);
# * **delayed, history $h$**: the same rule applied to the largest amax of the previous $h$
#   steps (MS-AMP uses $h = 16$, Transformer Engine defaults to 1024; the first step, with an
#   empty history, is just-in-time).
#
# On step `SPIKE_STEP` every watched tensor is multiplied by `SPIKE_FACTOR` before the casts, a
# stand-in for the outliers large models produce. The training itself is never touched: the
# probes only count.

# %%
text = pydoc_text()
tokenizer = CharTokenizer.fit(text)
train_ids, val_ids = train_val_split(torch.tensor(tokenizer.encode(text)))
model = tiny_llama(tokenizer.vocab_size, d_model=D_MODEL, n_layers=N_LAYERS, n_heads=N_HEADS,
                   mlp=MLP, max_seq=SEQ_LEN, seed=SEED).to(device)
linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
print(f"{sum(p.numel() for p in model.parameters()):,} parameters, {len(linears)} linear layers, "
      f"vocabulary {tokenizer.vocab_size}")

# %% [markdown]
# `repro.fp8.probe.ScalingProbe` registers the hooks: a forward hook sees each layer's input,
# and a hook on the layer's output tensor sees the gradient flowing back into it; each tensor
# is cast under every policy and the overflows and underflows are counted per step.

# %%
POLICIES = {"just-in-time": ("jit", 1), **{f"delayed, h={h}": ("delayed", h) for h in HISTORIES}}
ROLE_FORMAT = {"activation": "e4m3", "gradient": "e5m2"}  # as in an FP8 linear layer


probe = ScalingProbe(linears, STEPS, POLICIES, ROLE_FORMAT, spike_step=SPIKE_STEP,
                     spike_factor=SPIKE_FACTOR)


def batch_fn(step):
    probe.step = step
    return batch_at(train_ids, step, BATCH, SEQ_LEN, seed=SEED)


config = TrainConfig(steps=STEPS, lr=LR, warmup_steps=WARMUP, weight_decay=0.1,
                     betas=(0.9, 0.95), desc="fp32 + probes")
history = fit(model, lm_loss, batch_fn, config, device=device)
print(f"loss {history.loss[0]:.3f} -> {history.loss[-1]:.3f} in {history.seconds:.1f} s")

# %% [markdown]
# ## Why a scale at all
#
# First the tensors of the last step, cast as they are (scale 1) and with a just-in-time
# power-of-two scale. The fractions are over all entries of all linear layers.

# %%
rows = []
for role, fmt in ROLE_FORMAT.items():
    tensors = [x for (name, r), x in probe.kept.items() if r == role]
    amax = max(float(x.abs().max()) for x in tensors)
    for label in ("scale 1", "just-in-time scale"):
        stats = QuantStats()
        for x in tensors:
            scale = 1.0 if label == "scale 1" else power_of_two_scale(float(x.abs().max()),
                                                                      FORMATS[fmt.upper()].max)
            quantize(x, fmt, scale, stats=stats)
        rows.append({"tensor": role, "format": fmt.upper(), "largest |x|": amax, "cast": label,
                     "underflow %": 100 * stats.underflow_rate,
                     "overflow %": 100 * stats.overflow_rate})
_ = tables.show(rows, formats={"largest |x|": "{:.3g}", "underflow %": "{:.3f}",
                               "overflow %": "{:.3f}"},
                caption="Last step's tensors of all linear layers, cast with and without a scale")

# %% [markdown]
# The activations are of order 1, yet even they lose some of their entries (the ones closest
# to zero) to underflow at scale 1, because E4M3 has few binades below 1. The gradients are
# far worse off without a scale (see their "largest |x|"): the loss is a mean over the
# batch's tokens, so they are small, and many of them fall below even E5M2's smallest
# subnormal. A power-of-two scale (multiply by $2^k$, which is exact) moves each tensor's amax
# to just under the format's maximum, and the binades below it then hold almost everything:
# compare the underflow column of the two casts.
#
# ## Just-in-time vs delayed scaling, step by step
#
# Now the whole run. For each step and policy: the fraction of entries that overflowed (were
# clipped to ±max) and that underflowed (non-zero, became zero).

# %%
steps = list(range(STEPS))
fig, axes = plotting.subplots(2, 2, sharex=True)
for row, role in enumerate(ROLE_FORMAT):
    for col, kind in enumerate(("overflow", "underflow")):
        ax = axes[row, col]
        for i, policy in enumerate(POLICIES):
            ax.plot(steps, [100 * f for f in probe.fraction(role, policy, kind)], label=policy,
                    lw=2.5 if i == 0 else 1.3, ls="-" if i == 0 else "--")
        ax.axvline(SPIKE_STEP, color="0.6", lw=0.8, ls=":")
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_ylim(bottom=0)
        ax.set_ylabel(f"{kind} (% of entries)")
        ax.set_title(f"{role}s ({ROLE_FORMAT[role].upper()}): {kind}")
        if row == 1:
            ax.set_xlabel(f"training step (dotted: ×{SPIKE_FACTOR:g} spike)")
axes[0, 0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# **Takeaway:** just-in-time scaling never overflows, spike or not. Delayed scaling has to
# guess the amax from the past, and on the spike step every delayed policy clips a large share
# of the activation entries (the table below gives the numbers). The gradients show the other side of the trade: their amax
# shrinks as training settles, so a history of 16 or 1024 steps still holds the larger amaxes
# of the first steps. That absorbs most of their spike, but the scale is too small all along,
# hence more underflow than just-in-time (bottom right). The history length decides the rest:
# $h=1$ forgets the spike after one step but also clips whenever the amax simply grows from
# one step to the next; $h=16$ keeps the spike's small scale for 16 steps, then recovers (top
# right); $h=1024$ keeps it for the rest of the run.
#
# Does the gradients' amax really shrink? The last step's amax against the largest of the
# run, per layer (the median over layers):

# %%
for role in ROLE_FORMAT:
    ratios = sorted(a[-1] / max(a) for (name, r), a in probe.amax.items() if r == role)
    print(f"{role}s: last amax / largest amax of the run = {ratios[len(ratios) // 2]:.2f}")

# %% [markdown]
# Yes: by the end the gradients are well below their largest amax, the activations near theirs.
# The spike step and the steps after it, in numbers:

# %%
after = slice(SPIKE_STEP + 1, STEPS)
summary = []
for policy in POLICIES:
    row = {"policy": policy}
    for role in ROLE_FORMAT:
        row[f"{role} overflow on spike %"] = 100 * probe.fraction(role, policy, "overflow")[SPIKE_STEP]
        row[f"{role} overflow, other steps %"] = 100 * (
            sum(probe.fraction(role, policy, "overflow")) - probe.fraction(role, policy, "overflow")
            [SPIKE_STEP]) / (STEPS - 1)
        row[f"{role} underflow after spike %"] = 100 * (
            sum(probe.fraction(role, policy, "underflow")[after]) / len(steps[after]))
    summary.append(row)
_ = tables.show(summary, formats={c: "{:.3f}" for c in summary[0] if c.endswith("%")},
                caption=f"Overflow on the spike step (step {SPIKE_STEP}) and around it, per "
                        "scaling policy (% of entries)")

# %%
fig, (ax_o, ax_u) = plotting.subplots(1, 2)
labels = list(POLICIES)
plotting.bars(ax_o, labels, [r["activation overflow on spike %"] for r in summary],
              ylabel="activation entries clipped (%)", title="overflow on the spike step",
              highlight=labels[1:], fmt="{:.2g}")
plotting.bars(ax_u, labels, [r["activation underflow after spike %"] for r in summary],
              ylabel="activation entries flushed to 0 (%)",
              title="underflow on the steps after it", highlight=labels[1:], fmt="{:.2g}")
for ax in (ax_o, ax_u):
    ax.set_xlabel("scaling policy (red: delayed)")
fig.tight_layout()

# %% [markdown]
# **Takeaway:** delayed scaling trades a pass over the data for the risk of clipping a
# sudden outlier, and a long history trades fewer clips for a scale that stays too small after
# one. FP8-LM's layers follow MS-AMP: activations and output gradients are scaled with a
# 16-step history (cheap, tolerates slow growth), weights and weight gradients just-in-time.
# The claim, in the metric of the chapter's `claims.yaml`:

# %%
jit_overflow = probe.fraction("activation", "just-in-time", "overflow")[SPIKE_STEP]
delayed_overflow = probe.fraction("activation", "delayed, h=16", "overflow")[SPIKE_STEP]
print(f"activation overflow on the spike step: delayed (h=16) {100 * delayed_overflow:.3f} %, "
      f"just-in-time {100 * jit_overflow:.3f} %")
repro.ledger.record("delayed_scaling_overflows_on_spike", delayed_overflow - jit_overflow,
                    delayed_h16=delayed_overflow, just_in_time=jit_overflow,
                    spike_factor=SPIKE_FACTOR, spike_step=SPIKE_STEP, steps=STEPS)

# %% [markdown]
# ## Exercises
#
# 1. Rerun with `-p SPIKE_FACTOR 1.5`. Does delayed scaling with $h=16$ still clip on the
#    spike step? Work out, from the power-of-two rule, the smallest spike factor that must
#    clip whatever the history holds (hint: after scaling, the amax lands in $(224, 448]$).
# 2. Transformer Engine also offers `amax_compute_algo="most_recent"`. Build
#    `ScalingState("e4m3", "delayed", 16, reduction="most_recent")` into `POLICIES` and
#    compare its overflow during warm-up with the `"max"` reduction.
# 3. The weight gradients of an FP8 linear are cast to E4M3 in MS-AMP's code (just-in-time).
#    Add a third role that watches `layer.weight.grad` after each step (e.g. a hook on the
#    weight) and measure its underflow in E4M3 and E5M2 with a just-in-time scale.
# 4. Add `margin=1` to every `ScalingState` (one binade of headroom). How much of the spike's
#    overflow does it remove, and what does it cost in underflow?

# %% [markdown]
# ## Claims
#
# The values this notebook recorded, next to the paper's (the chapter's `claims.yaml` holds the
# sources and checks; the book's status page collects every chapter).

# %%
repro.ledger.show()
