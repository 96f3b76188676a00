"""Plotting helpers for the notebooks' figures (paper Figs. 6, 8-12 and the proxy codes).

Each function takes tidy DataFrames or arrays (from :mod:`fusnet.experiments`) and
returns a matplotlib ``Figure``; saving is the caller's
(:meth:`fusnet.experiments.NotebookOutputs.figure` writes PNG and SVG). Figures are
made with ``pyplot`` so a notebook displays them inline.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

CORRECT_COLOUR = "#2ca02c"
WRONG_COLOUR = "#d62728"


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _order(values: pd.Series, order: Sequence | None) -> list:
    present = list(dict.fromkeys(values.tolist()))
    if order is None:
        return present
    return [v for v in order if v in present]


def grouped_bars(
    ax,
    frame: pd.DataFrame,
    x: str,
    hue: str,
    value: str,
    x_order: Sequence | None = None,
    hue_order: Sequence | None = None,
    label_bars: bool = False,
    colours: dict | None = None,
    error: str | None = None,
) -> None:
    """Grouped bar chart on ``ax``: one group per ``x``, one bar per ``hue`` in it.

    Missing (x, hue) cells leave a gap. ``label_bars`` writes each value above its bar;
    ``colours`` maps hue -> colour (for the same colours across panels); ``error`` names
    a column drawn as ± error bars (e.g. the standard deviation over seeds).
    """
    xs = _order(frame[x], x_order)
    hues = _order(frame[hue], hue_order)
    cells = frame.set_index([x, hue])[value]
    errors = frame.set_index([x, hue])[error] if error else None
    width = 0.8 / max(len(hues), 1)
    positions = np.arange(len(xs))
    for j, h in enumerate(hues):
        heights = [float(cells.get((v, h), np.nan)) for v in xs]
        yerr = None if errors is None else [float(errors.get((v, h), np.nan)) for v in xs]
        bars = ax.bar(positions + (j - (len(hues) - 1) / 2) * width, heights, width, label=str(h),
                      color=(colours or {}).get(h), yerr=yerr, capsize=2 if yerr else 0)
        if label_bars:
            ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
    ax.set_xticks(positions, [str(v) for v in xs])
    ax.set_xlabel(x)
    ax.set_ylabel(value)


def lines(ax, frame: pd.DataFrame, x: str, hue: str, value: str, marker: str = "o", **kw) -> None:
    """One line per ``hue`` of ``value`` against ``x`` (sorted), on ``ax``."""
    for h in _order(frame[hue], None):
        part = frame[frame[hue] == h].sort_values(x)
        ax.plot(part[x], part[value], marker=marker, label=str(h), **kw)
    ax.set_xlabel(x)
    ax.set_ylabel(value)


def hue_colours(hues: Sequence) -> dict:
    """One colour per hue: tab10 for up to 10 hues, tab20 beyond."""
    plt = _plt()
    cmap = plt.get_cmap("tab10" if len(hues) <= 10 else "tab20")
    return {h: cmap(i % cmap.N) for i, h in enumerate(hues)}


def _panels(n: int, width: float = 4.2, height: float = 3.2, ncols: int | None = None):
    """``n`` panels in rows of ``ncols`` (default all in one row); spare axes hidden.

    Returns the figure and a flat list of the ``n`` axes.
    """
    plt = _plt()
    ncols = max(1, min(n, ncols or n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def generalisation_figures(table5: pd.DataFrame) -> tuple:
    """Fig. 6: (bar chart, line chart) of mAP by dataset and code length.

    Args:
        table5: ``side_by_side`` of our runs and the paper's Table 5 (columns
            dataset, bits, paper, map).

    Returns:
        Two figures, each with a panel for the paper's Table 5 and one for ours.
    """
    sources = [("paper (Table 5)", "paper"), ("this replication", "map")]
    bar_fig, bar_axes = _panels(2, width=5.0)
    line_fig, line_axes = _panels(2)
    for (title, column), bar_ax, line_ax in zip(sources, bar_axes, line_axes, strict=True):
        part = table5.dropna(subset=[column])
        if part.empty:
            for ax in (bar_ax, line_ax):
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
                ax.set_title(title)
            continue
        grouped_bars(bar_ax, part, x="dataset", hue="bits", value=column)
        lines(line_ax, part, x="bits", hue="dataset", value=column)
        for ax in (bar_ax, line_ax):
            ax.set_title(title)
            ax.set_ylabel("mAP (%)")
            ax.legend(fontsize=7)
        bar_ax.tick_params(axis="x", labelrotation=20)
        line_ax.set_xticks(sorted(part["bits"].unique()))
    bar_fig.tight_layout()
    line_fig.tight_layout()
    return bar_fig, line_fig


def panel_bars(
    frame: pd.DataFrame,
    hue: str,
    value: str = "map",
    hue_order: Sequence | None = None,
    title: str = "",
    panel: str = "dataset",
    ncols: int = 3,
    error: str | None = None,
):
    """One panel per ``panel`` value (dataset); groups = code lengths; bars = ``hue``.

    Figs. 8 and 9, Table 3 and the baselines (with ``error`` bars) drawn as bars;
    panels in rows of ``ncols``.
    """
    from matplotlib.patches import Patch

    datasets = _order(frame[panel], None)
    hues = _order(frame[hue], hue_order)
    colours = hue_colours(hues)
    width = max(3.6, 1.5 + 0.13 * len(hues) * frame["bits"].nunique())
    fig, axes = _panels(max(len(datasets), 1), width=width, ncols=ncols)
    for ax, dataset in zip(axes, datasets, strict=False):
        grouped_bars(ax, frame[frame[panel] == dataset], x="bits", hue=hue, value=value,
                     hue_order=hue_order, colours=colours, error=error)
        ax.set_title(f"{dataset}")
        ax.set_ylabel("mAP (%)")
        ax.set_xlabel("bits")
    labels = [str(h) for h in hues]
    handles = [Patch(color=colours[h], label=str(h)) for h in hues]
    rows = -(-len(labels) // 6) if labels else 0
    bottom = min(0.3, 0.06 * rows / max(1, -(-len(axes) // ncols)) + 0.02)
    if labels:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=7,
                   frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def ablation_figure(table6: pd.DataFrame, configurations: Sequence[str]):
    """Fig. 8: mAP of each Table 6 configuration, paper and ours, per dataset.

    Args:
        table6: ``side_by_side`` of our ablation runs and the paper's Table 6
            (columns configuration, dataset, bits, paper, map).
        configurations: the configurations, in table order.
    """
    rows = []
    for source, column in (("paper", "paper"), ("ours", "map")):
        part = table6.dropna(subset=[column]).assign(source=source, value=table6[column])
        rows.append(part)
    both = pd.concat(rows, ignore_index=True)
    both["panel"] = both["dataset"] + " (" + both["source"] + ")"
    return panel_bars(both, hue="configuration", value="value", hue_order=configurations,
                      title="Ablation (Table 6)", panel="panel")


def convergence_figure(history: pd.DataFrame):
    """Fig. 11: validation mAP per epoch, one panel per dataset, one line per code length."""
    from matplotlib.ticker import MaxNLocator

    datasets = _order(history["dataset"], None)
    fig, axes = _panels(max(len(datasets), 1))
    for ax, dataset in zip(axes, datasets, strict=False):
        part = history[history["dataset"] == dataset].dropna(subset=["val_map"])
        lines(ax, part.assign(bits=part["bits"].astype(str) + " bits"), x="epoch", hue="bits",
              value="val_map", marker=".")
        ax.set_title(dataset)
        ax.set_ylabel("validation mAP (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def retrieval_figure(
    queries: Sequence[np.ndarray],
    results: Sequence[Sequence[np.ndarray]],
    correct: np.ndarray,
    distances: np.ndarray,
    captions: Sequence[str] | None = None,
    title: str = "",
):
    """Fig. 12: each query (first column) and its top-k results, framed green or red.

    Args:
        queries: nq images (H, W, 3).
        results: nq lists of k images.
        correct: (nq, k) bool, result of the query's class.
        distances: (nq, k) Hamming distances (written under each result).
        captions: nq query captions (e.g. class names).
        title: figure title.
    """
    plt = _plt()
    nq, k = correct.shape
    fig, axes = plt.subplots(nq, k + 1, figsize=(1.25 * (k + 1), 1.45 * nq + 0.3),
                             squeeze=False)
    for i in range(nq):
        axes[i][0].imshow(queries[i])
        axes[i][0].set_title((captions[i] if captions else "query")[:16], fontsize=6)
        for j in range(k):
            ax = axes[i][j + 1]
            ax.imshow(results[i][j])
            colour = CORRECT_COLOUR if correct[i, j] else WRONG_COLOUR
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3)
            ax.set_title(f"d={int(distances[i, j])}", fontsize=6, color=colour)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.3, h_pad=0.8, rect=(0, 0, 1, 0.97 if title else 1))
    return fig


def cam_figure(
    images: np.ndarray,
    maps: dict[tuple[str, int], np.ndarray],
    kinds: Sequence[str],
    levels: Sequence[int],
    kind_titles: dict[str, str] | None = None,
    alpha: float = 0.5,
):
    """Fig. 10: each image, then its CAM overlays per level and kind.

    Args:
        images: (B, H, W, 3) in [0, 1].
        maps: ``(kind, level) -> (B, H, W)`` in [0, 1] (``compute_cams``).
        kinds: column order within a level.
        levels: 0-based levels, in column order.
        kind_titles: column titles per kind.
        alpha: overlay opacity.
    """
    plt = _plt()
    columns = [(kind, level) for level in levels for kind in kinds]
    b = len(images)
    fig, axes = plt.subplots(b, len(columns) + 1, figsize=(1.3 * (len(columns) + 1), 1.35 * b),
                             squeeze=False)
    for i in range(b):
        axes[i][0].imshow(images[i])
        for j, (kind, level) in enumerate(columns, 1):
            axes[i][j].imshow(images[i])
            axes[i][j].imshow(maps[(kind, level)][i], cmap="jet", alpha=alpha, vmin=0, vmax=1)
    axes[0][0].set_title("image", fontsize=7)
    for j, (kind, level) in enumerate(columns, 1):
        title = (kind_titles or {}).get(kind, kind)
        axes[0][j].set_title(f"L{level + 1}: {title}", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout(pad=0.3)
    return fig


def code_heatmaps(codes: dict[int, np.ndarray], title: str = ""):
    """Pairwise Hamming distances between class codes, one heatmap per code length.

    Args:
        codes: bits -> (C, bits) codes in {-1, +1}.
    """
    from fusnet.experiments.tables import hamming_matrix

    fig, axes = _panels(max(len(codes), 1), width=3.4, height=3.0)
    for ax, (bits, c) in zip(axes, sorted(codes.items()), strict=False):
        image = ax.imshow(hamming_matrix(c), cmap="viridis", vmin=0, vmax=bits)
        ax.set_title(f"{bits} bits", fontsize=9)
        ax.set_xlabel("class")
        ax.set_ylabel("class")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def distance_histograms(codes: dict[int, np.ndarray], title: str = ""):
    """Histogram of the pairwise class-code distances per code length.

    Drawn against the distribution of independent random codes, Binomial(bits, 1/2),
    scaled to the number of pairs.
    """
    from scipy import stats as sps

    from fusnet.experiments.tables import hamming_matrix

    fig, axes = _panels(max(len(codes), 1), width=3.4, height=2.8)
    for ax, (bits, c) in zip(axes, sorted(codes.items()), strict=False):
        d = hamming_matrix(c)
        pairs = d[np.triu_indices(len(c), k=1)]
        support = np.arange(bits + 1)
        ax.bar(support, np.bincount(pairs, minlength=bits + 1), width=0.9, label="class codes")
        ax.plot(support, len(pairs) * sps.binom.pmf(support, bits, 0.5), "k.-", lw=0.8,
                label="random codes")
        ax.set_title(f"{bits} bits", fontsize=9)
        ax.set_xlabel("Hamming distance")
        ax.set_ylabel("class pairs")
    if codes:
        axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
