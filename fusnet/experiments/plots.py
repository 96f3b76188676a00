"""The notebooks' figures (paper Figs. 6, 8-12 and the proxy codes): each function takes tidy
DataFrames or arrays and returns a ``pyplot`` figure, which ``NotebookOutputs.figure`` saves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fusnet.experiments.tables import hamming_matrix

CORRECT_COLOUR = "#2ca02c"
WRONG_COLOUR = "#d62728"


def _order(values: pd.Series, order: Sequence | None = None) -> list:
    present = list(dict.fromkeys(values.tolist()))
    return present if order is None else [v for v in order if v in present]


def _finish(fig, title: str = "", **layout):
    if title:
        fig.suptitle(title)
    fig.tight_layout(**layout)
    return fig


def grouped_bars(ax, frame: pd.DataFrame, x: str, hue: str, value: str,
                 hue_order: Sequence | None = None, colours: dict | None = None,
                 error: str | None = None) -> None:
    """A group per ``x``, a bar per ``hue`` (a gap where missing), ``error`` bars by column."""
    xs, hues = _order(frame[x]), _order(frame[hue], hue_order)
    cells = frame.set_index([x, hue])[value]
    errors = frame.set_index([x, hue])[error] if error else None
    width = 0.8 / max(len(hues), 1)
    positions = np.arange(len(xs))
    for j, h in enumerate(hues):
        heights = [float(cells.get((v, h), np.nan)) for v in xs]
        yerr = None if errors is None else [float(errors.get((v, h), np.nan)) for v in xs]
        ax.bar(positions + (j - (len(hues) - 1) / 2) * width, heights, width, label=str(h),
               color=(colours or {}).get(h), yerr=yerr, capsize=2 if yerr else 0)
    ax.set_xticks(positions, [str(v) for v in xs])
    ax.set(xlabel=x, ylabel=value)


def lines(ax, frame: pd.DataFrame, x: str, hue: str, value: str, marker: str = "o", **kw) -> None:
    """One line per ``hue`` of ``value`` against ``x`` (sorted), on ``ax``."""
    for h in _order(frame[hue]):
        part = frame[frame[hue] == h].sort_values(x)
        ax.plot(part[x], part[value], marker=marker, label=str(h), **kw)
    ax.set(xlabel=x, ylabel=value)


def hue_colours(hues: Sequence) -> dict:
    """One colour per hue: tab10 for up to 10 hues, tab20 beyond."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if len(hues) <= 10 else "tab20")
    return {h: cmap(i % cmap.N) for i, h in enumerate(hues)}


def _panels(n: int, width: float = 4.2, height: float = 3.2, ncols: int | None = None):
    """A figure of ``n`` panels in rows of ``ncols`` (default one row) and its ``n`` axes."""
    import matplotlib.pyplot as plt

    ncols = max(1, min(n, ncols or n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def generalisation_figures(table5: pd.DataFrame) -> tuple:
    """Fig. 6: bar and line charts of ``side_by_side``'s mAP, the paper's panel and ours."""
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
            ax.set(title=title, ylabel="mAP (%)")
            ax.legend(fontsize=7)
        bar_ax.tick_params(axis="x", labelrotation=20)
        line_ax.set_xticks(sorted(part["bits"].unique()))
    return _finish(bar_fig), _finish(line_fig)


def panel_bars(frame: pd.DataFrame, hue: str, value: str = "map",
               hue_order: Sequence | None = None, title: str = "", panel: str = "dataset",
               ncols: int = 3, error: str | None = None):
    """A panel per ``panel`` value, a group per code length, a bar per ``hue`` (Figs. 8, 9)."""
    from matplotlib.patches import Patch

    datasets, hues = _order(frame[panel]), _order(frame[hue], hue_order)
    colours = hue_colours(hues)
    width = max(3.6, 1.5 + 0.13 * len(hues) * frame["bits"].nunique())
    fig, axes = _panels(max(len(datasets), 1), width=width, ncols=ncols)
    for ax, dataset in zip(axes, datasets, strict=False):
        grouped_bars(ax, frame[frame[panel] == dataset], x="bits", hue=hue, value=value,
                     hue_order=hue_order, colours=colours, error=error)
        ax.set(title=f"{dataset}", ylabel="mAP (%)", xlabel="bits")
    rows = -(-len(hues) // 6)  # of the legend, 6 a row
    bottom = min(0.3, 0.06 * rows / max(1, -(-len(axes) // ncols)) + 0.02)
    if hues:
        fig.legend([Patch(color=colours[h], label=str(h)) for h in hues], [str(h) for h in hues],
                   loc="lower center", ncol=min(len(hues), 6), fontsize=7, frameon=False)
    return _finish(fig, title, rect=(0, bottom, 1, 1))


def ablation_figure(table6: pd.DataFrame, configurations: Sequence[str]):
    """Fig. 8: ``side_by_side``'s mAP per Table 6 configuration, the paper's and ours."""
    both = pd.concat([table6.dropna(subset=[column]).assign(source=source, value=table6[column])
                      for source, column in (("paper", "paper"), ("ours", "map"))],
                     ignore_index=True)
    both["panel"] = both["dataset"] + " (" + both["source"] + ")"
    return panel_bars(both, hue="configuration", value="value", hue_order=configurations,
                      title="Ablation (Table 6)", panel="panel")


def convergence_figure(history: pd.DataFrame):
    """Fig. 11: validation mAP per epoch, one panel per dataset, one line per code length."""
    from matplotlib.ticker import MaxNLocator

    datasets = _order(history["dataset"])
    fig, axes = _panels(max(len(datasets), 1))
    for ax, dataset in zip(axes, datasets, strict=False):
        part = history[history["dataset"] == dataset].dropna(subset=["val_map"])
        lines(ax, part.assign(bits=part["bits"].astype(str) + " bits"), x="epoch", hue="bits",
              value="val_map", marker=".")
        ax.set(title=dataset, ylabel="validation mAP (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    return _finish(fig)


def retrieval_figure(queries: Sequence[np.ndarray], results: Sequence[Sequence[np.ndarray]],
                     correct: np.ndarray, distances: np.ndarray,
                     captions: Sequence[str] | None = None, title: str = ""):
    """Fig. 12: each query and its k results, framed green where ``correct``, else red."""
    import matplotlib.pyplot as plt

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
        ax.set(xticks=[], yticks=[])
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.3, h_pad=0.8, rect=(0, 0, 1, 0.97 if title else 1))
    return fig


def cam_figure(images: np.ndarray, maps: dict[tuple[str, int], np.ndarray],
               kinds: Sequence[str], levels: Sequence[int],
               kind_titles: dict[str, str] | None = None, alpha: float = 0.5):
    """Fig. 10: each image, then its CAM overlays per level and kind, in the given orders."""
    import matplotlib.pyplot as plt

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
    return _finish(fig, pad=0.3)


def code_heatmaps(codes: dict[int, np.ndarray], title: str = ""):
    """Pairwise Hamming distances between class codes, a heatmap per code length."""
    fig, axes = _panels(max(len(codes), 1), width=3.4, height=3.0)
    for ax, (bits, c) in zip(axes, sorted(codes.items()), strict=False):
        image = ax.imshow(hamming_matrix(c), cmap="viridis", vmin=0, vmax=bits)
        ax.set_title(f"{bits} bits", fontsize=9)
        ax.set(xlabel="class", ylabel="class")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _finish(fig, title)


def distance_histograms(codes: dict[int, np.ndarray], title: str = ""):
    """Pairwise class-code distances per code length against random codes' Binomial(bits, ½)."""
    from scipy import stats as sps

    fig, axes = _panels(max(len(codes), 1), width=3.4, height=2.8)
    for ax, (bits, c) in zip(axes, sorted(codes.items()), strict=False):
        d = hamming_matrix(c)
        pairs = d[np.triu_indices(len(c), k=1)]
        support = np.arange(bits + 1)
        ax.bar(support, np.bincount(pairs, minlength=bits + 1), width=0.9, label="class codes")
        ax.plot(support, len(pairs) * sps.binom.pmf(support, bits, 0.5), "k.-", lw=0.8,
                label="random codes")
        ax.set_title(f"{bits} bits", fontsize=9)
        ax.set(xlabel="Hamming distance", ylabel="class pairs")
    if codes:
        axes[0].legend(fontsize=7)
    return _finish(fig, title)
