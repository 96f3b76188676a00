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
rates, the runs and their device, failures; ``lr_sweep.json`` with ``--sweep-only``). Nothing is typed in: every number is read
from a run's ``metrics.json``. The sweep, the grid and the processes are
``fusnet.experiments.executor``'s (``RunExecutor``, ``sweep_then_grid``); this script
reads the command line and writes the report.

    python scripts/baselines_parallel.py --profile cpu --methods semicon exchnet \\
        --lrs 0.0003 0.001 0.003 0.01 --device cuda --workers 8 --output-root /tmp/out
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from fusnet.experiments import ExperimentConfig
from fusnet.experiments.executor import (
    RunExecutor,
    cache_features_first,
    lr_sweep,
    sweep_markdown,
    sweep_then_grid,
)
from fusnet.experiments.profiles import notebook_parameters

logger = logging.getLogger("baselines_parallel")

NOTEBOOK = "09_baselines"


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
