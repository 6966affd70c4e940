"""One plotting style for the whole book, and a few plots every chapter needs."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


def use_style() -> None:
    """Apply the book's one style to matplotlib and seaborn alike (readable at the book's
    width): seaborn's ``ticks`` theme with the book's palette, then our rc settings on top,
    so a ``sns.*`` plot and a plain ``ax.plot`` look the same."""
    from cycler import cycler

    try:
        import seaborn as sns

        sns.set_theme(context="notebook", style="ticks", palette=PALETTE, font_scale=0.9)
    except ImportError:  # seaborn is a dependency; stay usable without it all the same
        pass
    matplotlib.rcParams.update({
        "figure.figsize": (6.4, 3.8),
        "figure.dpi": 100,
        "savefig.dpi": 120,
        "savefig.bbox": "tight",
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": cycler(color=PALETTE),
        "legend.frameon": False,
        "font.size": 10,
    })


def subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    import matplotlib.pyplot as plt

    use_style()
    w, h = matplotlib.rcParams["figure.figsize"]
    kwargs.setdefault("figsize", (w * ncols * (0.8 if ncols > 1 else 1), h * nrows))
    return plt.subplots(nrows, ncols, **kwargs)


def smooth(values: Sequence[float], window: int = 10) -> list[float]:
    """Trailing moving average (for noisy loss curves)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def curves(ax, series: dict[str, tuple[Sequence[float], Sequence[float]]], *, xlabel: str,
           ylabel: str, title: str | None = None, smooth_window: int = 0, logy: bool = False):
    """Plot named (x, y) series on ``ax`` with labelled axes and a legend."""
    for name, (x, y) in series.items():
        y = smooth(list(y), smooth_window) if smooth_window else y
        ax.plot(x, y, label=name, lw=1.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    return ax


def bars(ax, labels: Sequence[str], values: Sequence[float], *, ylabel: str,
         title: str | None = None, highlight: Sequence[str] = (), fmt: str = "{:.3g}"):
    """Bar chart with values printed on the bars; ``highlight`` bars in the second colour."""
    colors = [PALETTE[1] if lab in highlight else PALETTE[0] for lab in labels]
    rects = ax.bar(labels, values, color=colors)
    for r, v in zip(rects, values):
        ax.annotate(fmt.format(v), (r.get_x() + r.get_width() / 2, r.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    return ax
