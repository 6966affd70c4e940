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
# how similar their heads' attention maps are. At the **ci** scale they are 30k-parameter
# models trained for 150 steps on scikit-learn's 8 × 8 handwritten digits (one CPU thread,
# under a minute); the **local** scale trains four times longer. The paper's own comparison is
# on ImageNet.
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

# %% tags=["parameters-local", "skip-execution"]
SEED = 0
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

# %% tags=["parameters-full", "skip-execution"]
SEED = 0  # (ours: the paper reports single runs, no seed)
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

# %%
# %matplotlib inline
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # text progress bars are fine
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import repro
from repro import plotting
from repro.data import batch_indices, load_digits
from repro.train import TrainConfig, fit
from repro.vision import efficientvit as ev

device = repro.runtime.setup(seed=SEED)

# %% [markdown]
# ## Data
#
# The digits come with scikit-learn, so this runs offline. A seeded, stratified split keeps a
# quarter of them (450 images) for testing.

# %%
if DATASET != "digits":
    raise NotImplementedError(
        f"DATASET={DATASET!r}: ImageNet training runs outside notebooks, through "
        "`repro train efficientvit` under torchrun (see the chapter page)")
data = load_digits(size=IMAGE_SIZE, channels=1, seed=SEED)
print(f"train {tuple(data.x_train.shape)}, test {tuple(data.x_test.shape)}")

# %% [markdown]
# ## Two models that differ only in the attention
#
# Both use the library's EfficientViT with the same stem, sandwich blocks, widths, heads, key
# size (16) and classifier. In the MHSA model every head projects its query, key and value from
# all channels; in the CGA model head $j$ sees only the $j$-th quarter of the channels plus the
# output of head $j-1$.

# %%
config = dict(in_chans=1, num_classes=data.num_classes, img_size=IMAGE_SIZE,
              patch_embed_layers=STEM_LAYERS, embed_dims=EMBED_DIMS, depths=DEPTHS,
              num_heads=NUM_HEADS, window_size=WINDOW, kernels=[3] * max(NUM_HEADS))
models = {}
for attention in ("mhsa", "cascaded"):
    torch.manual_seed(SEED)
    models[attention] = ev.create_model("efficientvit_tiny", attention=attention, **config)
    print(f"{attention:8s} {ev.count_params(models[attention]):,} parameters")

# %% [markdown]
# ## Training
#
# The one training loop of the book (`repro.train.fit`): AdamW, warm-up then cosine decay.
# The batch at each step is a pure function of the step and the seed, so both models see the
# same images in the same order.

# %%
def batch_fn(step):
    idx = batch_indices(len(data.y_train), BATCH_SIZE, step, seed=SEED)
    return data.x_train[idx], data.y_train[idx]


def loss_fn(model, batch):
    images, labels = batch
    return F.cross_entropy(model(images), labels)


def accuracy(model):
    return {"accuracy": (model(data.x_test).argmax(1) == data.y_test).float().mean()}


histories = {}
for attention, model in models.items():
    train_config = TrainConfig(steps=STEPS, lr=LR, weight_decay=WEIGHT_DECAY,
                               warmup_steps=WARMUP_STEPS, desc=attention)
    histories[attention] = fit(model, loss_fn, batch_fn, train_config, eval_fn=accuracy,
                               device=device)

# %%
names = {"mhsa": "MHSA", "cascaded": "CGA"}
fig, ax = plotting.subplots()
plotting.curves(ax, {names[a]: (h.step, h.loss) for a, h in histories.items()},
                xlabel="step", ylabel="training loss (cross-entropy)", smooth_window=10,
                logy=True, title="Same data, same order, same seed")
plt.show()

# %%
acc = {a: 100 * h.evals[-1]["accuracy"] for a, h in histories.items()}
gap = acc["cascaded"] - acc["mhsa"]
repro.ledger.record("cga_accuracy_vs_mhsa", gap, mhsa=acc["mhsa"], cga=acc["cascaded"],
                    steps=STEPS, seed=SEED, test_images=len(data.y_test))
print(f"test accuracy: MHSA {acc['mhsa']:.2f}%, CGA {acc['cascaded']:.2f}% "
      f"(CGA - MHSA = {gap:+.2f} points)")

# %% [markdown]
# Both models learn the digits, the CGA model with 23% fewer parameters, and in every run we
# made it ended slightly *below* MHSA: for seeds 0 to 3 by 0.2, 0.9, 0.7 and 0.9 points after
# 150 steps (ci), and by 0.2, 1.1, 0.4 and 0.4 points after 600 steps (`--scale local`). One
# test image is 0.22 points, so each gap alone is within noise, but the sign is consistent. The
# paper reports CGA *more* accurate than MHSA on ImageNet; a one-minute run on digits does not
# reproduce that, so the claim waits for the full scale and this gap is recorded beside it.

# %% [markdown]
# ## How similar are the heads?
#
# We record every head's softmax attention map on the test images (`capture_attention`) and
# measure redundancy as the paper does: the cosine similarity between the maps of two heads,
# averaged over all pairs of heads and all images (`head_redundancy`; 1 means the heads attend
# identically).

# %%
redundancy = {}
for attention, model in models.items():
    model.eval()
    with torch.no_grad(), ev.capture_attention(model) as maps:
        model(data.x_test)
    redundancy[attention] = {name.split(".mixer")[0]: ev.head_redundancy(layer)
                             for name, layer in maps.items()}
layers = list(redundancy["mhsa"])
xs = torch.arange(len(layers))
fig, ax = plotting.subplots()
for offset, attention in ((-0.2, "mhsa"), (0.2, "cascaded")):
    rects = ax.bar(xs + offset, [redundancy[attention][n] for n in layers], 0.4,
                   label=names[attention])
    ax.bar_label(rects, fmt="%.2f", fontsize=8)
ax.set_xticks(xs.tolist(), [n.replace("stages.", "stage ").replace(".blocks.", ", block ")
                            for n in layers])
ax.set_xlabel("attention layer")
ax.set_ylabel("mean cosine similarity between heads")
ax.set_ylim(0, 1)
ax.set_title("Head redundancy on the test images (lower: more diverse heads)")
ax.legend(loc="upper right")
plt.show()

# %%
mean_redundancy = {a: sum(r.values()) / len(r) for a, r in redundancy.items()}
ratio = mean_redundancy["mhsa"] / mean_redundancy["cascaded"]
repro.ledger.record("cga_heads_less_similar", ratio, mhsa=mean_redundancy["mhsa"],
                    cga=mean_redundancy["cascaded"], steps=STEPS, seed=SEED)
print(f"mean similarity: MHSA {mean_redundancy['mhsa']:.3f}, "
      f"CGA {mean_redundancy['cascaded']:.3f}; MHSA / CGA = {ratio:.2f}")

# %% [markdown]
# ## What the heads look at
#
# One test digit and the attention map of every head in the last layer: row $i$ is the
# distribution of query token $i$ over the key tokens (4 × 4 tokens, read row by row).

# %%
image = data.x_test[:1]
fig, axes = plotting.subplots(2, 1 + max(NUM_HEADS), figsize=(10, 4.4))
for row, (attention, model) in enumerate(models.items()):
    with torch.no_grad(), ev.capture_attention(model) as maps:
        model(image)
    last = list(maps.values())[-1][0]  # [heads, N, N] of the first window
    axes[row, 0].imshow(image[0, 0], cmap="gray_r")
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
# **Takeaway.** On this toy task our measurement goes against the paper: the CGA heads are
# *more* similar to each other than the MHSA heads (a ratio below 1), in both layers. This is
# not a fluke of one seed: for seeds 0 to 3, after 150 and after 600 steps, the ratio stayed
# between 0.81 and 0.94 (and in one run on 16 × 16 digits with 64-token windows it was 0.58).
#
# Two effects plausibly work against CGA here. Each CGA head forms its query and key from
# only 8 channels, and in our runs its maps came out flatter, closer to uniform (exercise 3);
# flat maps look alike under a cosine similarity whichever head made them. And the cascade
# adds each head's output to the next head's input, which couples neighbouring heads. The
# paper's observation concerns models trained on ImageNet, where heads have 16 to 112 channels
# and attention has more to do than on 8 × 8 digits. The claim is therefore marked as needing
# the full scale; the ratio measured here is recorded next to it.

# %% [markdown]
# ## Exercises
#
# 1. Rerun with seeds we did not try (`-p SEED 4`, `-p SEED 5`). Do the sign of the accuracy
#    gap and the similarity ratio hold?
# 2. Follow the redundancy during training: let `accuracy` also return
#    `ev.head_redundancy(maps)` (capture the maps inside it), set `eval_every=25` in the
#    `TrainConfig`, and plot both models' redundancy against the step from `History.evals`.
#    Do the heads grow apart or together as they learn?
# 3. Measure the entropy of the attention maps of both models. Is the more similar model also
#    the one whose maps are closer to uniform? Why would that raise a cosine similarity?
# 4. Give the heads more to look at: `-p IMAGE_SIZE 16 -p WINDOW 8` (8 × 8 tokens, one
#    window). Does the comparison change when attention spans 64 tokens instead of 16?

# %% [markdown]
# ## Claims

# %%
repro.ledger.show()
