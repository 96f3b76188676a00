"""Do committed runs still reproduce with today's code? Retrain each from its config.json.

Each run folder's ``config.json`` is loaded with ``RunConfig.from_dict``, its output pointed
at a scratch folder and its feature caches at ``--cache-dir``, and trained again with
``Trainer(config).run()`` at the torch thread count its manifest records (the float sums,
hence the numbers, depend on it). "Same" means every ``metrics.json`` value equal except
timings (seconds, images per second).

    python scripts/rerun_check.py results/runs/cpu/flowers17/dpsh-48b-6bee6dd58b ... \\
        --scratch /tmp/rerun --cache-dir /tmp/rerun-cache --json results/rerun_check/x.json

Prints one line per run and writes them to ``--json`` (appending to what is there).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch

from fusnet.config import RunConfig
from fusnet.runtime import code_version
from fusnet.train.loop import Trainer

TIMING = re.compile(r"seconds|per_second|wall|_at$")


def differences(committed: Any, rerun: Any, where: str = "") -> list[str]:
    """Where two ``metrics.json`` values differ, timings left out."""
    if TIMING.search(where.rsplit(".", 1)[-1]):
        return []
    if isinstance(committed, dict) and isinstance(rerun, dict):
        keys = sorted(set(committed) | set(rerun))
        return [d for k in keys for d in differences(committed.get(k), rerun.get(k), f"{where}.{k}")]
    if isinstance(committed, list) and isinstance(rerun, list) and len(committed) == len(rerun):
        return [d for i, (a, b) in enumerate(zip(committed, rerun, strict=True))
                for d in differences(a, b, f"{where}[{i}]")]
    return [] if committed == rerun else [f"{where}: {committed!r} vs {rerun!r}"]


def rerun(folder: Path, scratch: Path, cache_dir: Path) -> dict[str, Any]:
    manifest = json.loads((folder / "manifest.json").read_text())
    committed = json.loads((folder / "metrics.json").read_text())
    threads = int(re.search(r"threads=(\d+)", manifest["device"]).group(1))
    torch.set_num_threads(threads)
    config = RunConfig.from_dict(json.loads((folder / "config.json").read_text())).replace(
        output_dir=str(scratch / folder.name), cache_dir=str(cache_dir), device="cpu")
    start = time.perf_counter()
    result = Trainer(config).run()
    found = differences(committed, result.metrics)
    return {"run": str(folder), "threads": threads, "committed_code": manifest["code"],
            "rerun_code": code_version(), "seconds": round(time.perf_counter() - start, 1),
            "test_map": [committed["map_index_ties"], result.metrics["map_index_ties"]],
            "same": not found, "differences": found[:20]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--scratch", type=Path, required=True, help="where the reruns go")
    parser.add_argument("--cache-dir", type=Path, required=True, help="feature caches")
    parser.add_argument("--json", type=Path, help="append the results to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for folder in args.runs:
        row = rerun(folder, args.scratch, args.cache_dir)
        sys.stdout.write(f"{folder.name}: committed {row['test_map'][0]:.4f}, rerun "
                         f"{row['test_map'][1]:.4f}, {'same' if row['same'] else 'DIFFERENT'} "
                         f"({row['seconds']:.0f} s, {row['threads']} threads)\n")
        if args.json:
            rows = json.loads(args.json.read_text()) if args.json.is_file() else []
            args.json.write_text(json.dumps([*rows, row], indent=1) + "\n")


if __name__ == "__main__":
    main()
