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

Writes ``<output root>/09_baselines/<profile>/parallel_runs.json`` (sweep table, chosen
rates, the runs and their device, failures). Nothing is typed in: every number is read
from a run's ``metrics.json``.

    python scripts/baselines_parallel.py --profile cpu --methods semicon exchnet \\
        --lrs 0.0003 0.001 0.003 0.01 --device cuda --workers 8 --output-root /tmp/out
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import math
import os
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import active_children, get_context
from typing import Any

from fusnet.experiments import ExperimentConfig, ensure_run
from fusnet.experiments.baselines import method_requests
from fusnet.experiments.runs import RunRequest
from fusnet.profiles import notebook_parameters

logger = logging.getLogger("baselines_parallel")

NOTEBOOK = "09_baselines"


def experiment(args: argparse.Namespace) -> tuple[ExperimentConfig, dict[str, Any]]:
    params = notebook_parameters(args.profile, NOTEBOOK, device=args.device,
                                 output_root=args.output_root)
    if args.epochs is not None:  # a dry run of the driver itself
        params["epochs"] = args.epochs
    if args.bits:  # a subset of the profile's code lengths
        params["bits"] = args.bits
    exp = ExperimentConfig(
        notebook=NOTEBOOK, profile=params["profile"], datasets=params["datasets"],
        bits=params["bits"], data_root=params["data_root"], backbone=params["backbone"],
        pretrained=params["pretrained"], epochs=params["epochs"],
        image_size=params["image_size"], mode=params["mode"], device=params["device"],
        seed=params["seed"], threads=None, output_root=params["output_root"],
        overrides=params["overrides"],
    )
    return exp, params


def _die_with_parent(driver: int) -> None:
    """Ask Linux to kill this worker when the driver dies (prctl PR_SET_PDEATHSIG), so no
    orphan goes on writing into a run folder that the next driver resumes. (A watchdog
    thread polling getppid() was tried: it can wait for the GIL for minutes.)"""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != driver:  # it died before the request
        os._exit(1)


def _worker_init(threads: int, driver: int) -> None:
    _die_with_parent(driver)
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)


def _train(exp: ExperimentConfig, request: RunRequest) -> dict[str, Any]:
    record = ensure_run(exp, request)
    val_maps = [h["val_map"] for h in record.metrics.get("history", []) if "val_map" in h]
    return {
        "dataset": record.dataset, "bits": record.bits, "method": request.label,
        "seed": record.config.seed, "lr": record.config.optim.lr,
        "path": str(record.path.relative_to(exp.runs_dir)),
        "map_index_ties": record.map_index_ties, "map_tie_aware": record.map_tie_aware,
        "val_maps": val_maps, "best_val_map": max(val_maps, default=None),
        "selected_epoch": (record.metrics.get("selection") or {}).get("epoch"),
        "device": record.manifest.get("device"), "wall_seconds": record.manifest.get("wall_seconds"),
        "reused": record.reused,
    }


def run_all(
    pool: ProcessPoolExecutor, exp: ExperimentConfig, requests: list[RunRequest], deadline: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train ``requests`` in the pool; stop waiting at ``deadline`` (monotonic seconds)."""
    futures: dict[Future, RunRequest] = {pool.submit(_train, exp, r): r for r in requests}
    done_records, failures = [], []
    pending = set(futures)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        finished, pending = wait(pending, timeout=left if math.isfinite(left) else None,
                                 return_when=FIRST_COMPLETED)
        for future in finished:
            request = futures[future]
            try:
                done_records.append(future.result())
                logger.info("done %s", done_records[-1])
            except Exception as exc:  # one failed run must not lose the others
                logger.error("FAILED %s: %r", request, exc)
                failures.append({"request": repr(request), "error": repr(exc)})
    for future in pending:
        future.cancel()
        failures.append({"request": repr(futures[future]), "error": "not finished by the deadline"})
    return done_records, failures


def choose_rates(sweep: list[dict[str, Any]], methods: list[str]) -> dict[str, float]:
    """Per method, the lr with the best validation mAP (ties: the smaller lr)."""
    chosen = {}
    for method in methods:
        rows = [r for r in sweep if r["method"] == method and r["best_val_map"] is not None]
        if rows:
            best = max(rows, key=lambda r: (r["best_val_map"], -r["lr"]))
            chosen[method] = best["lr"]
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
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per worker")
    parser.add_argument("--output-root", default=None)
    parser.add_argument("--deadline-s", type=float, default=float("inf"),
                        help="stop waiting for runs after this many seconds")
    parser.add_argument("--epochs", type=int, default=None, help="override (dry runs only)")
    args = parser.parse_args()
    candidates = {m: list(args.lrs) for m in args.methods}
    for item in args.method_lrs:
        method, _, rates = item.partition("=")
        if method not in candidates or not rates:
            parser.error(f"--method-lrs {item!r}: give METHOD=LR,LR with METHOD in --methods")
        candidates[method] = [float(r) for r in rates.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    start = time.monotonic()
    deadline = start + args.deadline_s
    exp, params = experiment(args)
    changes = {m: dict(params["method_changes"].get(m, {})) for m in args.methods}
    seeds = list(params["seeds"])

    # 1. One feature computation per dataset, here, before the workers read the caches.
    from fusnet.train import cache_features

    for dataset in exp.datasets:
        config = exp.run_config(dataset, exp.bits[0], method=args.methods[0], seed=seeds[0],
                                **{"data.num_workers": min(12, os.cpu_count() or 1),
                                   "data.eval_batch_size": 256})
        cache_features(config)
    logger.info("feature caches ready after %.0f s", time.monotonic() - start)

    report: dict[str, Any] = {"profile": exp.profile, "device": args.device, "lrs": candidates,
                              "methods": args.methods, "failures": []}
    pool = ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"),
                               initializer=_worker_init, initargs=(args.threads, os.getpid()))
    # 2. The lr sweep on the validation split.
    tune = exp.spec(exp.datasets[0]).name
    sweep_requests = [
        request
        for m in args.methods for lr in candidates[m]
        for request in method_requests(exp.datasets[:1], [max(exp.bits)], [m], seeds[:1],
                                       {m: {**changes[m], "optim.lr": lr}})
    ]
    sweep, failures = run_all(pool, exp, sweep_requests, deadline)
    report["failures"] += failures
    chosen = choose_rates(sweep, args.methods)
    report.update(sweep={"dataset": tune, "bits": max(exp.bits), "seed": seeds[0], "runs": sweep},
                  chosen_lr=chosen)
    logger.info("chosen learning rates (validation mAP): %s\n%s", chosen,
                sweep_markdown(sweep))
    # 3. The grid with the chosen rates.
    methods = [m for m in args.methods if m in chosen]
    final = {m: {**changes[m], "optim.lr": chosen[m]} for m in methods}
    grid = method_requests(exp.datasets, exp.bits, methods, seeds, final)
    grid.sort(key=lambda r: (r.changes["seed"], r.dataset, r.bits, r.label))
    runs, failures = run_all(pool, exp, grid, deadline)
    report.update(runs=runs, method_changes=final, wall_seconds=round(time.monotonic() - start, 1))
    report["failures"] += failures
    out = exp.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "parallel_runs.json").write_text(json.dumps(report, indent=2) + "\n")
    logger.info("wrote %s (%d runs, %d failures) in %.0f s", out / "parallel_runs.json",
                len(runs), len(report["failures"]), report["wall_seconds"])
    if time.monotonic() < deadline:
        pool.shutdown()
    else:  # runs still going are abandoned, not waited for
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in active_children():
            worker.terminate()


if __name__ == "__main__":
    main()
