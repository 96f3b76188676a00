"""Notebook 09's runs for some methods, trained in parallel processes (a lent GPU), with
each method's learning rate chosen on the validation split first.

The runs are exactly those notebook 09 asks for under ``--profile`` (same configs, so the
same run folders ``<output root>/runs/<profile>/<dataset>/<method>-<bits>b-<hash>``), except
that each method's ``optim.lr`` is replaced by the one chosen here. Copy the folders into
``results/runs/<profile>/``, set the chosen rates in the profile's ``method_changes``, and
notebook 09 reads them back instead of training (it logs "finished before" for each).

1. Feature caches (frozen mode) are computed once per dataset in this process.
2. Learning-rate sweep: every (method, lr) on the first dataset, the largest code length,
   the first seed, with the profile's validation selection. The lr with the best
   validation mAP over the epochs wins (ties: the smaller lr). The test split plays no
   part; its mAP is in each run's metrics but not read here.
3. The grid: every (dataset, bits, method, seed) with the chosen lr, ordered seed first,
   so whatever finishes before ``--deadline-s`` is whole seeds where possible.
   ``--sweep-only`` stops before it and prints the sweep's table
   (``scripts/baseline_lr_sweep.sh``).

Writes ``<output root>/09_baselines/<profile>/parallel_runs.json`` (sweep table, chosen
rates, the runs and their device, failures; ``lr_sweep.json`` with ``--sweep-only``), every
number read from a run's ``metrics.json``. The processes are ``fusnet.experiments.executor``'s
(``RunExecutor``); the sweep and the grid are this script's (:func:`lr_sweep`,
:func:`sweep_then_grid`; tests/test_executor.py loads them from here).

    python scripts/baselines_parallel.py --profile cpu --methods semicon exchnet \\
        --lrs 0.0003 0.001 0.003 0.01 --device cuda --workers 8 --output-root /tmp/out
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fusnet.experiments import ExperimentConfig, RunRecord
from fusnet.experiments.baselines import method_requests
from fusnet.experiments.executor import RunExecutor
from fusnet.experiments.profiles import notebook_parameters

logger = logging.getLogger("baselines_parallel")

NOTEBOOK = "09_baselines"


def cache_features_first(exp: ExperimentConfig, method: str, seed: int) -> None:
    """Each dataset's frozen-stage feature caches, computed here (up to 12 loader workers)
    before child processes read them, instead of each child computing them."""
    from fusnet.train.loop import cache_features

    for dataset in exp.datasets:
        config = exp.run_config(dataset, exp.bits[0], method=method, seed=seed,
                                **{"data.num_workers": min(12, os.cpu_count() or 1),
                                   "data.eval_batch_size": 256})
        cache_features(config)


def run_row(exp: ExperimentConfig, record: RunRecord) -> dict[str, Any]:
    """A finished run as one row of a sweep or grid report (every number from its files)."""
    val_maps = [h["val_map"] for h in record.metrics.get("history", []) if "val_map" in h]
    return {
        "dataset": record.dataset, "bits": record.bits, "method": record.label,
        "seed": record.config.seed, "lr": record.config.optim.lr,
        "path": str(record.path.relative_to(exp.runs_dir)),
        "map_index_ties": record.map_index_ties, "map_tie_aware": record.map_tie_aware,
        "val_maps": val_maps, "best_val_map": max(val_maps, default=None),
        "selected_epoch": (record.metrics.get("selection") or {}).get("epoch"),
        "device": record.manifest.get("device"), "wall_seconds": record.manifest.get("wall_seconds"),
        "reused": record.reused,
    }


def choose_rates(sweep: list[dict[str, Any]], methods: Sequence[str]) -> dict[str, float]:
    """Per method, the lr with the best validation mAP (ties: the smaller lr)."""
    chosen = {}
    for method in methods:
        rows = [r for r in sweep if r["method"] == method and r["best_val_map"] is not None]
        if rows:
            chosen[method] = max(rows, key=lambda r: (r["best_val_map"], -r["lr"]))["lr"]
    return chosen


def sweep_markdown(sweep: list[dict[str, Any]]) -> str:
    """The sweep as a markdown table: validation mAP per epoch of each run."""
    lines = ["| method | lr | best val mAP | at epoch | val mAP per epoch |",
             "|---|---:|---:|---:|---|"]
    for row in sorted(sweep, key=lambda r: (r["method"], r["lr"])):
        val, best = row["val_maps"], row["best_val_map"]
        if best is None:
            lines.append(f"| {row['method']} | {row['lr']:g} | — | — | no validation record |")
            continue
        lines.append(f"| {row['method']} | {row['lr']:g} | {best:.3f} | {val.index(best) + 1} | "
                     f"{' '.join(f'{v:.3f}' for v in val)} |")
    return "\n".join(lines) + "\n"


@dataclass
class LrSweep:
    """An lr sweep's runs (:func:`run_row` each), failures and chosen rate per method."""

    rows: list[dict[str, Any]]
    failures: list[dict[str, str]]
    chosen: dict[str, float]


def lr_sweep(executor: RunExecutor, methods: Sequence[str],
             candidates: Mapping[str, Sequence[float]], seed: int,
             method_changes: Mapping[str, Mapping[str, Any]] | None = None) -> LrSweep:
    """Every (method, lr in ``candidates[method]``) on the first dataset, the largest code
    length and ``seed``, with each method's other changes; rates by :func:`choose_rates`
    on validation mAP (the test split plays no part)."""
    exp, changes = executor.exp, method_changes or {}
    requests = [
        request
        for m in methods for lr in candidates[m]
        for request in method_requests(exp.datasets[:1], [max(exp.bits)], [m], [seed],
                                       {m: {**changes.get(m, {}), "optim.lr": lr}})
    ]
    done = executor.run(requests)
    rows = [run_row(exp, record) for record in done.records]
    chosen = choose_rates(rows, methods)
    logger.info("chosen learning rates (validation mAP): %s\n%s", chosen, sweep_markdown(rows))
    return LrSweep(rows, done.failures, chosen)


def sweep_then_grid(executor: RunExecutor, methods: Sequence[str],
                    candidates: Mapping[str, Sequence[float]], seeds: Sequence[int],
                    method_changes: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """:func:`lr_sweep` with the first seed, then every (dataset, bits, method, seed) with
    the chosen rates, seed first (a deadline leaves whole seeds); a method with no chosen
    rate is left out. Returns failures, sweep, chosen_lr, runs (the grid's rows) and
    method_changes (with the chosen rates)."""
    exp = executor.exp
    changes = {m: dict((method_changes or {}).get(m, {})) for m in methods}
    sweep = lr_sweep(executor, methods, candidates, seeds[0], changes)
    final = {m: {**changes[m], "optim.lr": sweep.chosen[m]} for m in methods if m in sweep.chosen}
    grid = method_requests(exp.datasets, exp.bits, list(final), seeds, final)
    grid.sort(key=lambda r: (r.changes["seed"], r.dataset, r.bits, r.label))
    done = executor.run(grid)
    return {
        "failures": sweep.failures + done.failures,
        "sweep": {"dataset": exp.spec(exp.datasets[0]).name, "bits": max(exp.bits),
                  "seed": seeds[0], "runs": sweep.rows},
        "chosen_lr": sweep.chosen,
        "runs": [run_row(exp, record) for record in done.records],
        "method_changes": final,
    }


def experiment(args: argparse.Namespace) -> tuple[ExperimentConfig, dict[str, Any]]:
    params = notebook_parameters(args.profile, NOTEBOOK, device=args.device, threads=None,
                                 output_root=args.output_root)
    if args.epochs is not None:  # a shorter sweep, or a dry run of the driver itself
        params["changes"]["epochs"] = args.epochs
    if args.bits:  # a subset of the profile's code lengths
        params["bits"] = args.bits
    exp = ExperimentConfig.from_parameters(
        NOTEBOOK, profile=params["profile"], datasets=params["datasets"], bits=params["bits"],
        changes=params["changes"], output_root=params["output_root"],
    )
    return exp, params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--methods", nargs="+", default=["semicon", "exchnet"])
    parser.add_argument("--lrs", nargs="+", type=float, default=[0.0003, 0.001, 0.003, 0.01])
    parser.add_argument("--method-lrs", nargs="+", default=[], metavar="METHOD=LR,LR",
                        help="a method's own candidates instead of --lrs (semicon=0.001,0.01,0.05)")
    parser.add_argument("--bits", nargs="+", type=int, default=None,
                        help="code lengths (default: the profile's); the sweep uses the largest")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workers", type=int, default=8,
                        help="child processes; 0: one run after another in this process")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per worker")
    parser.add_argument("--output-root", default=None)
    parser.add_argument("--deadline-s", type=float, default=float("inf"),
                        help="stop waiting for runs after this many seconds")
    parser.add_argument("--epochs", type=int, default=None,
                        help="the recipe's epochs changed (a shorter sweep; dry runs)")
    parser.add_argument("--sweep-only", action="store_true",
                        help="the lr sweep alone: no grid; print its table")
    args = parser.parse_args()
    candidates = {m: list(args.lrs) for m in args.methods}
    for item in args.method_lrs:
        method, _, rates = item.partition("=")
        if method not in candidates or not rates:
            parser.error(f"--method-lrs {item!r}: give METHOD=LR,LR with METHOD in --methods")
        candidates[method] = [float(r) for r in rates.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    start = time.monotonic()
    exp, params = experiment(args)
    seeds = list(params["seeds"])
    # 1. One feature computation per dataset, here, before the workers read the caches.
    if args.workers:
        cache_features_first(exp, args.methods[0], seeds[0])
        logger.info("feature caches ready after %.0f s", time.monotonic() - start)
    report: dict[str, Any] = {"profile": exp.profile, "device": args.device, "lrs": candidates,
                              "methods": args.methods}
    # 2. The lr sweep on the validation split; 3. the grid with the chosen rates.
    with RunExecutor(exp, workers=args.workers or None, threads=args.threads,
                     deadline=start + args.deadline_s, keep_going=True) as executor:
        if args.sweep_only:
            sweep = lr_sweep(executor, args.methods, candidates, seeds[0], params["method_changes"])
            report.update(failures=sweep.failures, chosen_lr=sweep.chosen,
                          sweep={"dataset": exp.spec(exp.datasets[0]).name, "bits": max(exp.bits),
                                 "seed": seeds[0], "epochs": exp.epochs, "runs": sweep.rows})
            name = "lr_sweep.json"
        else:
            report.update(sweep_then_grid(executor, args.methods, candidates, seeds,
                                          params["method_changes"]))
            name = "parallel_runs.json"
        report["wall_seconds"] = round(time.monotonic() - start, 1)
        out = exp.output_dir
        out.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(json.dumps(report, indent=2) + "\n")
        runs = report["sweep"]["runs"] if args.sweep_only else report["runs"]
        logger.info("wrote %s (%d runs, %d failures) in %.0f s", out / name, len(runs),
                    len(report["failures"]), report["wall_seconds"])
    if args.sweep_only:
        sys.stdout.write(sweep_markdown(report["sweep"]["runs"]))


if __name__ == "__main__":
    main()
