"""The training-regime comparison: finished runs read back into one table.

A regime is how much of the network trains and on what inputs: ``frozen`` (the head on
cached test-transform maps), ``top`` (the backbone's top stage(s) and the head on cached
lower maps, with or without cached augmented views) or ``full`` (end to end on live
augmented images). :func:`regime_table` reads every finished run folder below a folder
(``config.json``, ``metrics.json``, ``manifest.json``) into one row each, so a table or a
figure of the comparison is always built from what the runs recorded, never typed in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
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

LOWER_LEVEL_CHANGES = tuple(f"model.{name}" for name in LOWER_LEVEL_SWITCHES)
"""Changes that act on the lower levels only: a configuration without the cascade (the top
level alone) does not get them, so its run is the same (and is trained once) in every regime
that differs from another by them alone."""

_COLUMNS = ["regime", "configuration", "bits", "seed", "lr", "backbone_lr_scale", "epochs",
            "schedule", "augment", "views", "val_map", "val_epoch", "test_map",
            "train_seconds", "device", "run"]


def regime_name(config: dict, backbone: str = "efficientnet_lite0",
                epochs: int = CPU_EPOCHS) -> str:
    """``frozen``, ``full-<augment>``, ``top<t>`` or ``top<t>-views<K>`` from a run config,
    then the head's design choices that are not the paper's: ``-ld<p>`` when the lower
    levels are dropped (``model.level_dropout``), ``-<pool>pool`` for another level pooling
    (``model.level_pool``), ``-gate`` for the zero-initialised lower-level gate; then
    ``-e<N>`` where the run trains another number of epochs than ``epochs``; last the
    backbone where it is not ``backbone`` (``-lite1`` for ``efficientnet_lite1``), as the
    cpu profile's notebook 11 names its regimes."""
    mode = config["mode"]
    if mode == "frozen":
        name = "frozen"
    elif mode == "full":
        name = f"full-{config['data'].get('augment', 'paper')}"
    else:
        views = config["data"].get("cached_views", 0)
        name = f"top{config.get('top_stages', 2)}"
        name = f"{name}-views{views}" if views else name
    model = config["model"]
    level_dropout = model.get("level_dropout", 0.0)
    name = f"{name}-ld{level_dropout:g}" if level_dropout else name
    pool = model.get("level_pool", "max")
    name = f"{name}-{pool}pool" if pool != "max" else name
    name = f"{name}-gate" if model.get("lower_level_gate", False) else name
    own_epochs = config.get("optim", {}).get("epochs", epochs)
    name = f"{name}-e{own_epochs}" if own_epochs != epochs else name
    own = model.get("backbone", backbone)
    return name if own == backbone else f"{name}-{own.removeprefix('efficientnet_')}"


def configuration_name(config: dict) -> str:
    """The Table 6 configuration a run's switches name (``baseline`` ... full model)."""
    if config.get("method", "multifusnet") != "multifusnet":
        return config["method"]
    model = config["model"]
    for name, switches in ABLATION_CONFIGURATIONS.items():
        if all(model[k] == v for k, v in switches.items()):
            return name
    return "other"


def run_row(folder: Path) -> dict:
    """One finished run as a table row (mAPs in [0, 1])."""
    config = json.loads((folder / "config.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    selection = metrics.get("selection") or {}
    optim = config["optim"]
    return {
        "regime": regime_name(config),
        "configuration": configuration_name(config),
        "bits": config["model"]["bits"],
        "seed": config["seed"],
        "lr": optim["lr"],
        "backbone_lr_scale": optim.get("backbone_lr_scale", 1.0),
        "epochs": optim["epochs"],
        "schedule": optim.get("schedule", "step"),
        "augment": config["data"].get("augment", "paper") if config["mode"] != "frozen" else "-",
        "views": config["data"].get("cached_views", 0),
        "val_map": selection.get("val_map"),
        "val_epoch": selection.get("epoch"),
        "test_map": metrics["map_index_ties"],
        "train_seconds": manifest.get("train_seconds"),
        "device": manifest.get("device"),
        "run": folder.name,
    }


def regime_table(root: Path) -> pd.DataFrame:
    """Every finished run below ``root`` (a folder holding ``metrics.json``), one row each,
    sorted by regime, configuration, bits, seed and learning rate."""
    folders = sorted(p.parent for p in Path(root).rglob("metrics.json")
                     if (p.parent / "config.json").is_file() and (p.parent / "manifest.json").is_file())
    rows = [run_row(folder) for folder in folders]
    table = pd.DataFrame(rows, columns=_COLUMNS)
    return table.sort_values(["regime", "configuration", "bits", "seed", "lr"]).reset_index(drop=True)


def regime_markdown(root: Path) -> str:
    """:func:`regime_table` as a pipe table, mAPs in % (validation and test, ties by index)."""
    from fusnet.experiments.summary import to_markdown

    table = regime_table(root).drop(columns=["device"])
    for column in ("val_map", "test_map"):
        table[column] = table[column].astype(float) * 100
    table["train_seconds"] = table["train_seconds"].astype(float).round(0)
    return to_markdown(table.set_index(["regime", "configuration"]))


RowsByBits = Mapping[int | str, Sequence[str]]
"""Code length (an int, or its string from JSON) -> the configurations run at it."""
SeedsByBits = Mapping[int | str, Sequence[int]]
"""Code length (an int, or its string from JSON) -> the training seeds run at it."""


def regime_requests(
    datasets: Sequence[str], bits: Sequence[int], regimes: Mapping[str, Mapping[str, Any]],
    configurations: Sequence[str],
    regime_configurations: Mapping[str, Sequence[str] | RowsByBits] | None = None,
    regime_seeds: Mapping[str, SeedsByBits] | None = None,
) -> list[RunRequest]:
    """One run per (dataset, bits, regime, configuration), labelled ``regime/configuration``;
    where ``regime_seeds`` names more seeds, one per seed, labelled ``regime/configuration/seed<s>``.

    Args:
        datasets: the experiment's dataset names.
        bits: code lengths.
        regimes: regime name -> RunConfig changes (dotted), e.g. ``{"mode": "top", ...}``.
        configurations: Table 6 configuration names (``ABLATION_CONFIGURATIONS``).
        regime_configurations: regime name -> the configurations run in it (in
            ``configurations``' order), either one list for every code length or a dict
            code length -> list (a code length it does not name runs none); a regime not
            named here runs them all at every code length.
        regime_seeds: regime name -> code length -> training seeds (``RunConfig.seed``) its
            rows run with at that length; elsewhere the recipe's one seed. A row shared with
            another regime (the baseline has no lower levels) is the same run at each seed.

    Raises:
        ConfigError: an unknown configuration, regime or code length.
    """
    only = {regime: _rows_by_bits(regime, rows, bits)
            for regime, rows in (regime_configurations or {}).items()}
    named = [c for by_bits in only.values() for rows in by_bits.values() for c in rows]
    unknown = [c for c in [*configurations, *named] if c not in ABLATION_CONFIGURATIONS]
    if unknown:
        raise ConfigError(f"unknown configurations {unknown}; choose from "
                          f"{list(ABLATION_CONFIGURATIONS)}")
    if set(only) - set(regimes):
        raise ConfigError(f"regime_configurations names regimes {sorted(set(only) - set(regimes))} "
                          f"that are not among the regimes {list(regimes)}")
    switches = ablation_variants(list(configurations) + named)

    def run_changes(configuration: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        if ABLATION_CONFIGURATIONS[configuration]["cascade"]:
            return {**switches[configuration], **dict(changes)}
        return {**switches[configuration],
                **{k: v for k, v in changes.items() if k not in LOWER_LEVEL_CHANGES}}

    seeds = {regime: _seeds_by_bits(regime, by_bits, bits)
             for regime, by_bits in (regime_seeds or {}).items()}
    if set(seeds) - set(regimes):
        raise ConfigError(f"regime_seeds names regimes {sorted(set(seeds) - set(regimes))} "
                          f"that are not among the regimes {list(regimes)}")

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


def _seeds_by_bits(regime: str, by_bits: SeedsByBits, bits: Sequence[int]) -> dict[int, list[int]]:
    """``regime_seeds[regime]`` as code length -> seeds, checked."""
    if not isinstance(by_bits, Mapping):
        raise ConfigError(f"regime_seeds[{regime!r}] must map code lengths to seed lists, "
                          f"e.g. {{48: [0, 1, 2]}}; got {by_bits!r}")
    out = {int(k): [int(seed) for seed in seeds] for k, seeds in by_bits.items()}
    _check_code_lengths(f"regime_seeds[{regime!r}]", out, bits)
    for k, seeds in out.items():
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"regime_seeds[{regime!r}][{k}] = {seeds}: give distinct seeds")
    return out


def _rows_by_bits(regime: str, rows: Sequence[str] | RowsByBits,
                  bits: Sequence[int]) -> dict[int, Sequence[str]]:
    """``regime_configurations[regime]`` as code length -> rows (a list: every length)."""
    if not isinstance(rows, Mapping):
        return {int(k): rows for k in bits}
    by_bits = {int(k): names for k, names in rows.items()}
    _check_code_lengths(f"regime_configurations[{regime!r}]", by_bits, bits)
    return by_bits


def _check_code_lengths(name: str, by_bits: Mapping[int, Any], bits: Sequence[int]) -> None:
    """A ConfigError when ``by_bits`` names a code length the experiment does not run."""
    extra = sorted(set(by_bits) - {int(k) for k in bits})
    if extra:
        raise ConfigError(f"{name} names code lengths {extra} that are not among the bits "
                          f"{list(bits)}")


def regime_summary(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per run of :func:`regime_requests`: validation and test mAP (%), the selected
    epoch, the learned task weights there, training time and speed."""
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
            "test_map": 100.0 * r.map_index_ties,
            "epoch": selected,
            "alpha1": epoch.get("alpha1", math.nan), "alpha2": epoch.get("alpha2", math.nan),
            "train_minutes": r.manifest.get("train_seconds", math.nan) / 60.0,
            "images_per_second": r.manifest.get("train_images_per_second", math.nan),
        })
    return pd.DataFrame(rows)


_CELL = ["dataset", "bits", "regime"]


def regime_seed_means(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`regime_summary` averaged over seeds: one row per (dataset, bits, regime,
    configuration) with the mean and sample standard deviation (NaN for one seed) of
    validation and test mAP, the number of seeds and the mean training minutes."""
    keys = [*_CELL, "configuration"]
    grouped = summary.groupby(keys, sort=False)
    out = grouped.agg(val_map=("val_map", "mean"), val_std=("val_map", "std"),
                      test_map=("test_map", "mean"), test_std=("test_map", "std"),
                      seeds=("seed", "nunique"), train_minutes=("train_minutes", "mean"))
    return out.reset_index()


def regime_gaps(summary: pd.DataFrame, baseline: str, full: str) -> dict[str, dict[str, float]]:
    """Full model minus baseline per ``dataset/bits/regime``, paired by seed.

    Returns ``{"<dataset>/<bits>/<regime>": {"val", "test", "n", "test_p"}}``: the mean
    differences (mAP points) over the seeds both rows ran, their number, and the two-sided
    p-value of a paired t-test of the test differences (NaN below two seeds).
    """
    gaps: dict[str, dict[str, float]] = {}
    for (dataset, bits, regime), part in summary.groupby(_CELL, sort=False):
        rows = part.set_index(["configuration", "seed"])
        if baseline not in rows.index.get_level_values(0) or full not in rows.index.get_level_values(0):
            continue
        base, head = rows.loc[baseline], rows.loc[full]
        seeds = sorted(set(base.index) & set(head.index))
        if not seeds:
            continue
        maps = ["val_map", "test_map"]
        diff = head.loc[seeds, maps].to_numpy() - base.loc[seeds, maps].to_numpy()  # (seeds, 2)
        p = math.nan
        if len(seeds) >= 2:
            p = paired_ttest(head.loc[seeds, "test_map"].to_numpy(),
                             base.loc[seeds, "test_map"].to_numpy()).p_two_sided
        gaps[f"{dataset}/{bits}/{regime}"] = {
            "val": float(diff[:, 0].mean()), "test": float(diff[:, 1].mean()),
            "n": len(seeds), "test_p": float(p),
        }
    return gaps


def regime_figure(summary: pd.DataFrame) -> Any:
    """Test mAP (%) per regime, one bar per configuration (the mean over its seeds), a panel
    per (dataset, bits)."""
    import matplotlib.pyplot as plt

    panels = summary[["dataset", "bits"]].drop_duplicates().itertuples(index=False)
    panels = list(panels)
    # one colour per configuration in every panel, whichever configurations a panel has
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
