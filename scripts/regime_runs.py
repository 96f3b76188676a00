"""Train the regime comparison's runs (baseline vs full model under a training regime).

Each arm is a named set of RunConfig changes on top of a profile's recipe
(``fusnet.experiments.recipes.RECIPES``; the cpu profile's by default: CUB subset, EfficientNet-Lite0,
224 px, narrow head widths, the lower-level gate: ``--set model.lower_level_gate=false`` for
the paper's head); the ``frozen`` arm is the recipe itself. Runs land where the
notebooks' runs do (``results/runs/<profile>/<dataset>/<tag>-<bits>b-<hash>``, trained
once and resumed exactly if interrupted), so a notebook reads them back with ``ensure_run``.

    python scripts/regime_runs.py --arms top2-views4 --configurations baseline full \\
        --bits 48 --seeds 0

Prints one line per run: arm, configuration, bits, seed, best validation mAP, test mAP.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd
import torch

from fusnet.experiments import ExperimentConfig, ensure_run
from fusnet.experiments.recipes import REGIMES
from fusnet.experiments.regimes import regime_name
from fusnet.experiments.runs import ABLATION_CONFIGURATIONS, RunRequest, ablation_variants
from fusnet.experiments.tables import to_markdown

NOTEBOOK = "03_ablation"  # Table 6's rows; names the experiment only (no output of its own)

ARMS = REGIMES
"""Arm name -> RunConfig changes (``fusnet.experiments.recipes.REGIMES``; the profile's recipe otherwise)."""

CONFIGURATIONS = {"full": "cascading+fusion+attention", **{c: c for c in ABLATION_CONFIGURATIONS}}
"""Configuration name -> Table 6 row: the five rows by name, and "full" for the last."""


_COLUMNS = ["regime", "configuration", "bits", "seed", "lr", "backbone_lr_scale", "epochs",
            "schedule", "augment", "views", "image_size", "caches", "val_map", "val_epoch", "test_map",
            "train_seconds", "eval_seconds", "wall_seconds", "caching_seconds", "device", "run"]


def configuration_name(config: dict) -> str:
    """The Table 6 configuration a run's switches name (``baseline`` ... full model)."""
    if config.get("method", "multifusnet") != "multifusnet":
        return config["method"]
    for name, switches in ABLATION_CONFIGURATIONS.items():
        if all(config["model"][k] == v for k, v in switches.items()):
            return name
    return "other"


def run_row(folder: Path) -> dict:
    """One finished run folder as a table row (mAPs in [0, 1])."""
    config, metrics, manifest = (json.loads((folder / f"{name}.json").read_text())
                                 for name in ("config", "metrics", "manifest"))
    selection, optim, data = metrics.get("selection") or {}, config["optim"], config["data"]
    return {
        "regime": regime_name(config), "configuration": configuration_name(config),
        "bits": config["model"]["bits"], "seed": config["seed"], "lr": optim["lr"],
        "backbone_lr_scale": optim.get("backbone_lr_scale", 1.0), "epochs": optim["epochs"],
        "schedule": optim.get("schedule", "step"),
        "augment": data.get("augment", "paper") if config["mode"] != "frozen" else "-",
        "views": data.get("cached_views", 0),
        "image_size": (f'{data["image_size"]}/{data["eval_image_size"]}'  # train/evaluation
                       if data.get("eval_image_size") else data["image_size"]),
        # how the frozen backbone computed the caches: layout, arithmetic
        "caches": (f'{data.get("cache_layout", "contiguous")}, '
                   f'{data.get("cache_precision", "float32")}'),
        "val_map": selection.get("val_map"),
        "val_epoch": selection.get("epoch"), "test_map": metrics["map_index_ties"],
        "train_seconds": manifest.get("train_seconds"),
        # evaluation (validation and test), all of it, and the caching this run did itself
        "eval_seconds": manifest.get("eval_seconds"), "wall_seconds": manifest.get("wall_seconds"),
        "caching_seconds": manifest.get("caching_seconds"), "device": manifest.get("device"),
        "run": folder.name,
    }


def regime_table(root: Path) -> pd.DataFrame:
    """Every finished run below ``root``, one row each, sorted by regime, configuration,
    bits, seed and learning rate."""
    folders = sorted(p.parent for p in Path(root).rglob("metrics.json")
                     if (p.parent / "config.json").is_file() and (p.parent / "manifest.json").is_file())
    table = pd.DataFrame([run_row(folder) for folder in folders], columns=_COLUMNS)
    return table.sort_values(["regime", "configuration", "bits", "seed", "lr"]).reset_index(drop=True)


def regime_markdown(root: Path) -> str:
    """:func:`regime_table` as a pipe table, mAPs in % (validation and test, ties by index)."""
    table = regime_table(root).drop(columns=["device"])
    for column in ("val_map", "test_map"):
        table[column] = table[column].astype(float) * 100
    for column in ("train_seconds", "eval_seconds", "wall_seconds", "caching_seconds"):
        table[column] = table[column].astype(float).round(0)
    return to_markdown(table.set_index(["regime", "configuration"]))



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--configurations", nargs="+", default=["baseline", "full"],
                        choices=list(CONFIGURATIONS))
    parser.add_argument("--bits", nargs="+", type=int, default=[48])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--dataset", default="cub200")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON",
                        help="extra RunConfig changes for every run, e.g. optim.lr=0.02")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--table", type=Path, metavar="DIR",
                        help="train nothing: print the table of the finished runs below DIR")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.table:
        sys.stdout.write(regime_markdown(args.table) + "\n")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    extra = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    for seed in args.seeds:
        exp = ExperimentConfig.from_parameters(
            NOTEBOOK, profile=args.profile, datasets=[args.dataset], bits=args.bits,
            changes={"seed": seed, "threads": None},
        )
        variants = ablation_variants(CONFIGURATIONS[c] for c in args.configurations)
        for arm in args.arms:
            for bits in args.bits:
                for configuration in args.configurations:
                    changes = {**variants[CONFIGURATIONS[configuration]], **ARMS[arm], **extra}
                    record = ensure_run(exp, RunRequest(args.dataset, bits, configuration, changes))
                    selection = record.metrics["selection"]
                    logging.info(
                        "RESULT arm=%s %s bits=%d seed=%d val=%.4f (epoch %s) test=%.4f "
                        "train_s=%.0f -> %s", arm, configuration, bits, seed,
                        selection.get("val_map", float("nan")), selection.get("epoch"),
                        record.map_index_ties, record.manifest["train_seconds"], record.path,
                    )


if __name__ == "__main__":
    main()
