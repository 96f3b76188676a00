"""The training-regime comparison (notebook 11), built from what its runs recorded. A regime
is how much of the network trains: ``frozen`` (the head on cached maps), ``top`` (the
backbone's top stage(s) too, with or without cached augmented views) or ``full``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from fusnet.errors import ConfigError
from fusnet.experiments.config import LOWER_LEVEL_SWITCHES
from fusnet.experiments.recipes import CPU_EPOCHS
from fusnet.experiments.runs import (
    ABLATION_CONFIGURATIONS,
    RunRecord,
    RunRequest,
    ablation_variants,
)
from fusnet.experiments.stats import paired_ttest

# Not given to a configuration without the cascade: regimes differing by them share its run.
LOWER_LEVEL_CHANGES = tuple(f"model.{name}" for name in LOWER_LEVEL_SWITCHES)


def regime_name(config: dict, backbone: str = "efficientnet_lite0", epochs: int = CPU_EPOCHS) -> str:
    """A run config's regime as the cpu profile's notebook 11 names it: ``frozen``,
    ``full-<augment>``, ``top<t>`` or ``top<t>-views<K>`` (``-dwfrozen``: ``freeze_depthwise``),
    then the head's choices that are not the paper's (``-ld<p>`` level dropout,
    ``-<pool>pool``, ``-gate``), ``-e<N>`` for other epochs than ``epochs``, and the backbone
    where it is not ``backbone`` (``-lite1``)."""
    mode, model, data = config["mode"], config["model"], config["data"]
    views, dropout = data.get("cached_views", 0), model.get("level_dropout", 0.0)
    pool, own_epochs = model.get("level_pool", "max"), config.get("optim", {}).get("epochs", epochs)
    own = model.get("backbone", backbone)
    parts = [
        "frozen" if mode == "frozen" else f"full-{data.get('augment', 'paper')}" if mode == "full"
        else f"top{config.get('top_stages', 2)}" + (f"-views{views}" if views else ""),
        "-dwfrozen" if config.get("freeze_depthwise", False) else "",
        f"-ld{dropout:g}" if dropout else "", f"-{pool}pool" if pool != "max" else "",
        "-gate" if model.get("lower_level_gate", False) else "",
        f"-e{own_epochs}" if own_epochs != epochs else "",
        "" if own == backbone else f"-{own.removeprefix('efficientnet_')}",
    ]
    return "".join(parts)


RowsByBits = Mapping[int | str, Sequence[str]]  # code length (or its JSON string) -> rows
SeedsByBits = Mapping[int | str, Sequence[int]]  # code length (or its JSON string) -> seeds


def _by_bits(name: str, by_bits: Mapping[Any, Any], bits: Sequence[int]) -> dict[int, Any]:
    """``by_bits`` keyed by int; ConfigError for a code length the experiment does not run."""
    out = {int(k): v for k, v in by_bits.items()}
    extra = sorted(set(out) - {int(k) for k in bits})
    if extra:
        raise ConfigError(f"{name} names code lengths {extra} that are not among the bits "
                          f"{list(bits)}")
    return out


def regime_requests(
    datasets: Sequence[str], bits: Sequence[int], regimes: Mapping[str, Mapping[str, Any]],
    configurations: Sequence[str],
    regime_configurations: Mapping[str, Sequence[str] | RowsByBits] | None = None,
    regime_seeds: Mapping[str, SeedsByBits] | None = None,
) -> list[RunRequest]:
    """One run per (dataset, bits, regime: name -> dotted changes, Table 6 configuration),
    labelled ``regime/configuration`` (``.../seed<s>`` where ``regime_seeds`` names seeds).
    ``regime_configurations``: regime -> its configurations, one list or code length -> list
    (a length not named runs none; a regime not named runs them all). ``regime_seeds``:
    regime -> code length -> seeds (elsewhere the recipe's); a shared row is one run a seed."""
    only = {regime: _by_bits(f"regime_configurations[{regime!r}]", rows, bits)
            if isinstance(rows, Mapping) else {int(k): rows for k in bits}
            for regime, rows in (regime_configurations or {}).items()}
    named = [c for by_bits in only.values() for rows in by_bits.values() for c in rows]
    unknown = [c for c in [*configurations, *named] if c not in ABLATION_CONFIGURATIONS]
    if unknown:
        raise ConfigError(f"unknown configurations {unknown}; choose from "
                          f"{list(ABLATION_CONFIGURATIONS)}")
    seeds = {regime: _seeds(regime, by_bits, bits) for regime, by_bits in (regime_seeds or {}).items()}
    for name, given in (("regime_configurations", only), ("regime_seeds", seeds)):
        if set(given) - set(regimes):
            raise ConfigError(f"{name} names regimes {sorted(set(given) - set(regimes))} "
                              f"that are not among the regimes {list(regimes)}")
    switches = ablation_variants(list(configurations) + named)

    def run_changes(configuration: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        cascade = ABLATION_CONFIGURATIONS[configuration]["cascade"]
        return {**switches[configuration],
                **{k: v for k, v in changes.items() if cascade or k not in LOWER_LEVEL_CHANGES}}

    def seeded(label: str, changes: dict[str, Any], run_seeds: Sequence[int] | None):
        if run_seeds is None:
            return [(label, changes)]
        return [(f"{label}/seed{seed}", {**changes, "seed": seed}) for seed in run_seeds]

    return [
        RunRequest(dataset, int(k), label, run)
        for dataset in datasets for k in bits
        for regime, changes in regimes.items() for configuration in configurations
        if regime not in only or configuration in only[regime].get(int(k), ())
        for label, run in seeded(f"{regime}/{configuration}", run_changes(configuration, changes),
                                 seeds.get(regime, {}).get(int(k)))
    ]


def _seeds(regime: str, by_bits: SeedsByBits, bits: Sequence[int]) -> dict[int, list[int]]:
    """``regime_seeds[regime]`` as code length -> distinct seeds, checked."""
    if not isinstance(by_bits, Mapping):
        raise ConfigError(f"regime_seeds[{regime!r}] must map code lengths to seed lists, "
                          f"e.g. {{48: [0, 1, 2]}}; got {by_bits!r}")
    out = _by_bits(f"regime_seeds[{regime!r}]",
                   {k: [int(seed) for seed in seeds] for k, seeds in by_bits.items()}, bits)
    for k, seeds in out.items():
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"regime_seeds[{regime!r}][{k}] = {seeds}: give distinct seeds")
    return out


def regime_summary(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Per run: validation and test mAP (%), selected epoch, its task weights, speed."""
    rows = []
    for r in records:
        regime, configuration = r.label.split("/")[:2]
        selected = r.metrics["selection"].get("epoch")
        epoch = next((h for h in r.metrics["history"] if h["epoch"] == selected),
                     r.metrics["history"][-1])
        rows.append({
            "dataset": r.dataset, "bits": r.bits, "regime": regime,
            "configuration": configuration, "seed": r.config.seed,
            "val_map": 100.0 * r.metrics["selection"].get("val_map", math.nan),
            "test_map": 100.0 * r.map_index_ties, "epoch": selected,
            "alpha1": epoch.get("alpha1", math.nan), "alpha2": epoch.get("alpha2", math.nan),
            "train_minutes": r.manifest.get("train_seconds", math.nan) / 60.0,
            "images_per_second": r.manifest.get("train_images_per_second", math.nan),
        })
    return pd.DataFrame(rows)


_CELL = ["dataset", "bits", "regime"]


def regime_seed_means(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`regime_summary`'s mean and std over seeds per (dataset, bits, regime, row)."""
    out = summary.groupby([*_CELL, "configuration"], sort=False).agg(
        val_map=("val_map", "mean"), val_std=("val_map", "std"),
        test_map=("test_map", "mean"), test_std=("test_map", "std"),
        seeds=("seed", "nunique"), train_minutes=("train_minutes", "mean"))
    return out.reset_index()


def regime_gaps(summary: pd.DataFrame, baseline: str, full: str) -> dict[str, dict[str, float]]:
    """Full model minus baseline per ``dataset/bits/regime`` over the seeds both ran: mean
    ``val`` and ``test`` differences, ``n`` seeds, ``test_p`` (paired t, two-sided)."""
    gaps: dict[str, dict[str, float]] = {}
    for (dataset, bits, regime), part in summary.groupby(_CELL, sort=False):
        rows = part.set_index(["configuration", "seed"])
        names = rows.index.get_level_values(0)
        if baseline not in names or full not in names:
            continue
        base, head = rows.loc[baseline], rows.loc[full]
        seeds = sorted(set(base.index) & set(head.index))
        if not seeds:
            continue
        maps = ["val_map", "test_map"]
        full_maps, base_maps = head.loc[seeds, maps].to_numpy(), base.loc[seeds, maps].to_numpy()
        diff = full_maps - base_maps  # (seeds, 2)
        p = paired_ttest(full_maps[:, 1], base_maps[:, 1]).p_two_sided if len(seeds) >= 2 else math.nan
        gaps[f"{dataset}/{bits}/{regime}"] = {"val": float(diff[:, 0].mean()),
                                              "test": float(diff[:, 1].mean()),
                                              "n": len(seeds), "test_p": float(p)}
    return gaps


def regime_figure(summary: pd.DataFrame) -> Any:
    """Test mAP (%) per regime, a bar per configuration, a panel per (dataset, bits)."""
    import matplotlib.pyplot as plt

    panels = list(summary[["dataset", "bits"]].drop_duplicates().itertuples(index=False))
    configurations = list(summary["configuration"].unique())
    colours = dict(zip(configurations, plt.rcParams["axes.prop_cycle"].by_key()["color"],
                       strict=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.2), squeeze=False)
    for ax, (dataset, bits) in zip(axes[0], panels, strict=True):
        part = summary[(summary["dataset"] == dataset) & (summary["bits"] == bits)]
        table = part.pivot_table(index="regime", columns="configuration", values="test_map",
                                 sort=False)
        table = table[[name for name in configurations if name in table.columns]]
        table.plot.bar(ax=ax, width=0.75, legend=False,
                       color=[colours[name] for name in table.columns])
        ax.set_xticklabels(ax.get_xticklabels(), rotation=40, ha="right", fontsize=8)
        ax.set_title(f"{dataset}, {bits} bits")
        ax.set_ylabel("test mAP (%)")
        ax.set_xlabel("")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[name]) for name in configurations]
    fig.legend(handles, configurations, fontsize=8, loc="upper center",
               ncol=len(configurations), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig
