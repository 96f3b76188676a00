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
from pathlib import Path

import pandas as pd

from fusnet.experiments.runs import ABLATION_CONFIGURATIONS

_COLUMNS = ["regime", "configuration", "bits", "seed", "lr", "backbone_lr_scale", "epochs",
            "schedule", "augment", "views", "val_map", "val_epoch", "test_map",
            "train_seconds", "device", "run"]


def regime_name(config: dict) -> str:
    """``frozen``, ``full-<augment>``, ``top<t>`` or ``top<t>-views<K>`` from a run config."""
    mode = config["mode"]
    if mode == "frozen":
        return "frozen"
    if mode == "full":
        return f"full-{config['data'].get('augment', 'paper')}"
    views = config["data"].get("cached_views", 0)
    name = f"top{config.get('top_stages', 2)}"
    return f"{name}-views{views}" if views else name


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
