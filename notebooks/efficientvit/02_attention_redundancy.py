# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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
# # EfficientViT 2: do cascaded heads attend differently?
#
# Xinyu Liu, Houwen Peng, Ningxin Zheng, Yuqing Yang, Han Hu, Yixuan Yuan. *EfficientViT: Memory
# Efficient Vision Transformer with Cascaded Group Attention.* CVPR 2023.
# [arXiv:2305.07027](https://arxiv.org/abs/2305.07027)
#
# The paper observes that the heads of multi-head self-attention (MHSA) in trained vision
# transformers compute similar attention maps, so part of their computation is redundant
# (Sec. 2). Its answer, cascaded group attention (CGA), feeds each head a different split of
# the channels plus the previous head's output; the abstract says this "improves attention
# diversity". This notebook trains two tiny EfficientViTs that differ only in the attention,
# on the same data in the same order from the same seed, and compares their test accuracy and
# how similar their heads' attention maps are, for several seeds. At the **ci** scale they are
# tiny models (the table below gives their sizes) trained for 150 steps on scikit-learn's
# 8 × 8 handwritten digits, three seeds on one CPU thread; the **local** scale trains four
# times longer, with four seeds. The **full** scale is the paper's: two EfficientViT-M4 trained on ImageNet-1k
# with `repro train efficientvit --attention cascaded` and `--attention mhsa`, evaluated here
# on the ImageNet validation set.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/repro-companion/repro/blob/main/notebooks/efficientvit/02_attention_redundancy.ipynb)

# %%
import sys

if "google.colab" in sys.modules:  # Colab only: this book's release of repro
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "repro @ git+https://github.com/repro-companion/repro@v0.1.0"], check=True)

# %% tags=["parameters"]
SEED = 0
SEEDS = [0, 1, 2]  # ci: three seeds, each trains both models
DATASET = "digits"  # scikit-learn's 1,797 handwritten digits, shipped with the package
IMAGE_SIZE = 8  # the digits' native resolution
STEM_LAYERS = 1  # one stride-2 conv: 8 x 8 pixels -> 4 x 4 tokens
EMBED_DIMS = [32]  # one stage of two sandwich blocks, 4 heads of 8 channels
DEPTHS = [2]
NUM_HEADS = [4]
WINDOW = 4
STEPS = 150
BATCH_SIZE = 64
LR = 3e-3
WEIGHT_DECAY = 0.05
WARMUP_STEPS = 15
RUN_CGA = ""  # full scale only: trained runs of `repro train efficientvit`
RUN_MHSA = ""
DATA_DIR = ""  # full scale only: ImageNet root holding val/<wnid>/
REDUNDANCY_IMAGES = 450  # ci: all test digits (used at full scale only)

# %% tags=["parameters-local", "skip-execution"]
SEED = 0
SEEDS = [0, 1, 2, 3]  # local: four seeds
DATASET = "digits"
IMAGE_SIZE = 8
STEM_LAYERS = 1
EMBED_DIMS = [32]
DEPTHS = [2]
NUM_HEADS = [4]
WINDOW = 4
STEPS = 600  # local: four times longer, a few minutes on a laptop CPU
BATCH_SIZE = 64
LR = 3e-3
WEIGHT_DECAY = 0.05
WARMUP_STEPS = 60
RUN_CGA = ""
RUN_MHSA = ""
DATA_DIR = ""
REDUNDANCY_IMAGES = 450

# %% tags=["parameters-full", "skip-execution"]
SEED = 0  # (ours: the paper reports single runs, no seed)
SEEDS = [0]  # (ours: one ImageNet run per attention)
DATASET = "imagenet-1k"  # Sec. 4.1
IMAGE_SIZE = 224  # Sec. 4.1
STEM_LAYERS = 4  # Sec. 3.4: overlapping patch embedding, 16x downsampling
EMBED_DIMS = [128, 256, 384]  # EfficientViT-M4, README model zoo
DEPTHS = [1, 2, 3]  # M4
NUM_HEADS = [4, 4, 4]  # M4
WINDOW = 7  # Sec. 3.4: 7 x 7 local windows
STEPS = 187_800  # Sec. 4.1: 300 epochs of 626 steps (1.28 M images, batch 2048)
BATCH_SIZE = 2048  # main.py: 8 GPUs x 256
LR = 4e-3  # main.py: 1e-3 x 2048 / 512
WEIGHT_DECAY = 0.025  # main.py
WARMUP_STEPS = 3_130  # main.py: 5 warm-up epochs
RUN_CGA = "runs/m4-cascaded"  # (ours) repro train efficientvit --attention cascaded
RUN_MHSA = "runs/m4-mhsa"  # (ours) repro train efficientvit --attention mhsa
DATA_DIR = "/data/imagenet"  # (ours) the imagenet-1k manifest's layout
REDUNDANCY_IMAGES = 5_000  # (ours: 100 validation images per class would do as well)

# %%
# %matplotlib inline
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # text progress bars are fine
import math

import matplotlib.pyplot as plt
import seaborn as sns
import torch
import torch.nn.functional as F

import repro
from repro import plotting
from repro.data import batch_indices, load_digits
from repro.train import TrainConfig, fit
from repro.vision import efficientvit as ev
from repro.vision import evaluate as evl

device = repro.runtime.setup(seed=SEED)
names = {"mhsa": "MHSA", "cascaded": "CGA"}

# %% [markdown]
# ## Data
#
# At the ci and local scales the digits come with scikit-learn, so this runs offline; a
# seeded, stratified split keeps a quarter of them for testing. At the full scale the models
# were trained on ImageNet-1k outside this notebook, and we evaluate them on its validation
# set (`data/manifests/imagenet-1k.yaml` says how to get it).

# %%
if DATASET == "digits":
    data = load_digits(size=IMAGE_SIZE, channels=1, seed=SEED)
    print(f"train {tuple(data.x_train.shape)}, test {tuple(data.x_test.shape)}")
else:
    val = evl.ImageNetValidation(DATA_DIR, evl.eval_transform("efficientvit_m4", IMAGE_SIZE),
                                 complete=True)
    loader = torch.utils.data.DataLoader(val, batch_size=min(BATCH_SIZE, 256), num_workers=8)
    print(f"ImageNet validation: {len(val):,} images")

# %% [markdown]
# ## Two models that differ only in the attention
#
# Both use the library's EfficientViT with the same stem, sandwich blocks, widths, heads, key
# size (16) and classifier. In the MHSA model every head projects its query, key and value from
# all channels; in the CGA model head $j$ sees only the $j$-th split of the channels plus the
# output of head $j-1$.

# %%
config = dict(in_chans=1 if DATASET == "digits" else 3,
              num_classes=data.num_classes if DATASET == "digits" else 1000,
              img_size=IMAGE_SIZE, patch_embed_layers=STEM_LAYERS, embed_dims=EMBED_DIMS,
              depths=DEPTHS, num_heads=NUM_HEADS, window_size=WINDOW,
              kernels=[3] * max(NUM_HEADS) if DATASET == "digits" else [7, 5, 3, 3])
sizes = {a: ev.count_params(ev.create_model("efficientvit_tiny", attention=a, **config))
         for a in names}
saving = 1 - sizes["cascaded"] / sizes["mhsa"]
repro.tables.show([{"attention": names[a], "parameters": n} for a, n in sizes.items()],
                  caption="Parameters of the two models (same widths, heads and key size)")
print(f"CGA has {100 * saving:.0f}% fewer parameters than MHSA")

# %% [markdown]
# ## Training, seed by seed
#
# The one training loop of the book (`repro.train.fit`): AdamW, warm-up then cosine decay.
# The batch at each step is a pure function of the step and the seed, so for one seed both
# models see the same images in the same order from the same initial weights (where their
# shapes agree). After training we measure test accuracy and head redundancy with the same
# functions the full scale uses (`repro.vision.evaluate`).

# %%
def train(attention, seed):
    torch.manual_seed(seed)
    model = ev.create_model("efficientvit_tiny", attention=attention, **config)

    def batch_fn(step):
        idx = batch_indices(len(data.y_train), BATCH_SIZE, step, seed=seed)
        return data.x_train[idx], data.y_train[idx]

    def loss_fn(model, batch):
        images, labels = batch
        return F.cross_entropy(model(images), labels)

    train_config = TrainConfig(steps=STEPS, lr=LR, weight_decay=WEIGHT_DECAY,
                               warmup_steps=WARMUP_STEPS, desc=f"{names[attention]}, seed {seed}")
    history = fit(model, loss_fn, batch_fn, train_config, device=device)
    return model.eval(), history


rows, histories, models = [], {}, {}
for seed in SEEDS:
    for attention in names:
        if DATASET == "digits":
            model, histories[attention, seed] = train(attention, seed)
            test, redundancy_batches = [(data.x_test, data.y_test)], None
        else:  # full scale: the ImageNet runs, the validation set
            model = evl.load_trained(RUN_CGA if attention == "cascaded" else RUN_MHSA)
            test, redundancy_batches = loader, math.ceil(REDUNDANCY_IMAGES / loader.batch_size)
        quiet = dict(device=device, show_progress=DATASET != "digits")  # one batch at ci
        accuracy = evl.evaluate_classifier(model, test, **quiet)["top1"]
        redundancy = evl.attention_redundancy(model, test, max_batches=redundancy_batches,
                                              **quiet)
        models[attention, seed] = model
        rows.append({"seed": seed, "attention": names[attention], "test top-1 (%)": accuracy,
                     "similarity (max)": redundancy["all"]["max"],
                     "similarity (mean)": redundancy["all"]["mean"]})
results = repro.tables.frame(rows)

# %%
if histories:
    fig, ax = plotting.subplots()
    plotting.curves(ax, {f"{names[a]}, seed {s}": (h.step, h.loss)
                         for (a, s), h in histories.items()},
                    xlabel="step", ylabel="training loss (cross-entropy)", smooth_window=10,
                    logy=True, title="Same data, same order, same seed per pair")
    plt.show()

# %% [markdown]
# ## Accuracy
#
# Test accuracy of both models for every seed, and the gap CGA − MHSA:

# %%
wide = results.pivot(index="seed", columns="attention")
per_seed = repro.tables.frame({
    "seed": wide.index,
    "MHSA top-1 (%)": wide["test top-1 (%)"]["MHSA"].values,
    "CGA top-1 (%)": wide["test top-1 (%)"]["CGA"].values,
    "CGA − MHSA (points)": (wide["test top-1 (%)"]["CGA"] - wide["test top-1 (%)"]["MHSA"]).values,
    "MHSA similarity (max)": wide["similarity (max)"]["MHSA"].values,
    "CGA similarity (max)": wide["similarity (max)"]["CGA"].values,
    "MHSA / CGA similarity": (wide["similarity (max)"]["MHSA"]
                              / wide["similarity (max)"]["CGA"]).values,
})
repro.tables.show(per_seed, formats={"MHSA top-1 (%)": "{:.2f}", "CGA top-1 (%)": "{:.2f}",
                                     "CGA − MHSA (points)": "{:+.2f}",
                                     "MHSA similarity (max)": "{:.3f}",
                                     "CGA similarity (max)": "{:.3f}",
                                     "MHSA / CGA similarity": "{:.2f}"},
                  caption=f"Per seed, after {STEPS} steps ({DATASET})")
gaps = per_seed["CGA − MHSA (points)"]
test_images = len(data.y_test) if DATASET == "digits" else len(val)
one_image = 100 / test_images
gap = float(gaps.mean())
repro.ledger.record("cga_accuracy_vs_mhsa", gap, per_seed=[round(g, 2) for g in gaps],
                    seeds=SEEDS, steps=STEPS, test_images=test_images)
print(f"CGA − MHSA over seeds {SEEDS}: mean {gap:+.2f} points, range {gaps.min():+.2f} to "
      f"{gaps.max():+.2f}; CGA below MHSA in {int((gaps < 0).sum())} of {len(gaps)} seeds; "
      f"one test image is {one_image:.2f} points")

# %% [markdown]
# The line above is this run's answer. Its gaps are a few test images wide, so one seed alone
# says little; the sign over the seeds is what to read. The paper reports CGA *more* accurate
# than MHSA in its ImageNet ablation; whatever the toy run shows, the claim is about the full
# scale, so it waits for it and the mean gap is recorded beside it (the ledger shows a negative
# one as "contradicted at ci").

# %% [markdown]
# ## How similar are the heads?
#
# We record every head's softmax attention map on the test images (`capture_attention`) and
# compare heads by the cosine similarity of their maps (`head_redundancy`). Two reductions:
# each head's **maximum** similarity to any other head, averaged over heads (our reading of
# the paper's Fig. 3, which plots "the average maximum cosine similarity of each head"), and
# the **mean** over all pairs of heads. 1 means two heads attend identically.

# %%
long = results.melt(id_vars=["seed", "attention"], value_vars=["similarity (max)",
                                                               "similarity (mean)"],
                    var_name="measure", value_name="cosine similarity")
fig, ax = plotting.subplots()
sns.pointplot(data=long, x="measure", y="cosine similarity", hue="attention", dodge=0.3,
              errorbar=("pi", 100), linestyle="none", ax=ax)
sns.stripplot(data=long, x="measure", y="cosine similarity", hue="attention", dodge=True,
              alpha=0.5, legend=False, ax=ax)
ax.set_xlabel("how heads are compared")
ax.set_ylabel("cosine similarity between heads' maps")
ax.set_title(f"Head redundancy, {len(SEEDS)} seed(s): mean and range (lower: more diverse)")
plt.show()

# %%
ratios = per_seed["MHSA / CGA similarity"]
ratio = float(ratios.mean())
repro.ledger.record("cga_heads_less_similar", ratio, measure="max", per_seed=[round(r, 3) for r
                                                                            in ratios],
                    seeds=SEEDS, steps=STEPS)
print(f"MHSA / CGA similarity (max measure) over seeds {SEEDS}: mean {ratio:.2f}, range "
      f"{ratios.min():.2f} to {ratios.max():.2f}; below 1 (CGA heads more alike) in "
      f"{int((ratios < 1).sum())} of {len(ratios)} seeds")
mean_ratio = (wide["similarity (mean)"]["MHSA"] / wide["similarity (mean)"]["CGA"]).mean()
print(f"with the mean-over-pairs measure: {mean_ratio:.2f}")

# %% [markdown]
# **Takeaway.** The two lines above say which model's heads are more alike in this run, by
# each measure. When the ratio is below 1, as it has been on the digits, our toy measurement
# goes against the paper's observation. Two effects plausibly work against CGA here. Each CGA
# head forms its query and key from only a quarter of the channels, and its maps can come out
# flatter, closer to uniform (exercise 3); flat maps look alike under a cosine similarity
# whichever head made them. And the cascade adds each head's output to the next head's input,
# which couples neighbouring heads. The paper's observation concerns models trained on
# ImageNet, where heads have 16 to 112 channels and attention has more to do than on 8 × 8
# digits; the full scale of this notebook measures exactly that, and until it runs the claim
# is marked as needing it.

# %% [markdown]
# ## What the heads look at
#
# One test image and the attention map of every head in the last layer, for the first seed:
# row $i$ is the distribution of query token $i$ over the key tokens (read row by row).

# %%
image = data.x_test[:1] if DATASET == "digits" else next(iter(loader))[0][:1]
fig, axes = plotting.subplots(2, 1 + max(NUM_HEADS), figsize=(10, 4.4))
for row, attention in enumerate(names):
    model = models[attention, SEEDS[0]]
    with torch.no_grad(), ev.capture_attention(model) as maps:
        model(image.to(device))
    last = list(maps.values())[-1][0].cpu()  # [heads, N, N] of the first window
    axes[row, 0].imshow(image[0].mean(0), cmap="gray_r")
    axes[row, 0].set_title(f"{names[attention]}: input")
    for head in range(last.shape[0]):
        axes[row, head + 1].imshow(last[head], cmap="viridis", vmin=0)
        axes[row, head + 1].set_title(f"head {head + 1}")
        axes[row, head + 1].set_xlabel("key token")
    axes[row, 1].set_ylabel("query token")
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
plt.show()

# %% [markdown]
# **Takeaway.** Compare the rows: heads whose maps look alike are what the similarity measures
# above count. Flat, nearly uniform maps (little structure in a row) are alike whichever
# channels produced them.

# %% [markdown]
# ## Exercises
#
# 1. Rerun with other seeds (`-p SEEDS "[4, 5, 6]"`). Do the sign of the accuracy gap and
#    the similarity ratio hold?
# 2. Follow the redundancy during training: give `fit` an `eval_fn` that returns
#    `evl.attention_redundancy(model, [(data.x_test, None)])["all"]["max"]`, set
#    `eval_every=25` in the `TrainConfig`, and plot both models' redundancy against the step
#    from `History.evals`. Do the heads grow apart or together as they learn?
# 3. Measure the entropy of the attention maps of both models. Is the more similar model also
#    the one whose maps are closer to uniform? Why would that raise a cosine similarity?
# 4. Give the heads more to look at: `-p IMAGE_SIZE 16 -p WINDOW 8` (8 × 8 tokens, one
#    window). Does the comparison change when attention spans 64 tokens instead of 16?

# %% [markdown]
# ## Claims

# %%
repro.ledger.show()
