"""Benchmark: search latency of a gallery with and without a concurrent writer (issue 31).

A synthetic gallery of ``--count`` 48-bit codes (flat index; ``tests/test_index_concurrency.py``
builds it without a model). ``--searchers`` processes each query it in a loop (one random
code, k = 10, then a 20 ms pause), twice in one run on the same machine:

* ``writer``: one process adds ``--chunks`` chunks of ``--chunk`` codes meanwhile (a pause
  of ``--seconds / --chunks`` before each); each commit publishes a snapshot;
* ``no writer``: nothing else touches the gallery, for as long as the writer ran.

A query's latency is ``Gallery.refresh()`` (moving to the last published snapshot:
reading ``gallery.json``, and after a commit the new rows and the index) plus
``search_codes``; each searcher's first query (the gallery's first open) is left out.

Run: ``.venv/bin/python benchmarks/bench_gallery_concurrency.py`` (about 3 minutes);
``--quick`` for 200,000 codes and 10 s of pauses.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from machine import machine_info  # benchmarks/ is the script's folder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package
from tests.test_index_concurrency import (
    SPAWN,
    build_synthetic,
    start_searchers,
    stop_searchers,
    writer_worker,
)

HEADER = ("| phase | searchers | queries | p50 ms | p99 ms | max ms | snapshots seen |\n"
          "|---|---|---|---|---|---|---|")


def phase(g: Path, folder: Path, args: argparse.Namespace, writer: bool, seconds: float = 0.0) -> dict:
    """Searchers on ``g`` while a writer adds chunks, or for ``seconds`` without one."""
    folder.mkdir()
    procs = start_searchers(g, folder, args.searchers, seconds=args.seconds + 600)
    start = time.perf_counter()
    if writer:
        source = f"syn:{args.count}:{args.count + args.chunks * args.chunk}"
        proc = SPAWN.Process(target=writer_worker, args=(str(g), source, args.chunk, args.seconds / args.chunks))
        proc.start()
        proc.join(args.seconds + 600)
        assert proc.exitcode == 0, f"writer exit code {proc.exitcode}"
    else:
        time.sleep(seconds)
    seconds = time.perf_counter() - start
    records = stop_searchers(procs, folder)
    failures = [f for r in records for f in r["failures"]]
    assert not failures, failures[:3]
    ms = 1000 * np.concatenate([r["latencies"][1:] for r in records])
    p50, p99, top = np.percentile(ms, [50, 99, 100])
    return {"phase": "writer" if writer else "no writer", "searchers": args.searchers,
            "queries": len(ms), "p50_ms": p50, "p99_ms": p99, "max_ms": top, "seconds": seconds,
            "snapshots": max(len(r["counts"]) for r in records)}


def _row(r: dict) -> str:
    return (f"| {r['phase']} | {r['searchers']} | {r['queries']:,} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['max_ms']:.0f} | {r['snapshots']} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="codes in the gallery")
    parser.add_argument("--searchers", type=int, default=8, help="search processes")
    parser.add_argument("--seconds", type=float, default=30.0, help="the writer's pauses in all")
    parser.add_argument("--chunks", type=int, default=10, help="chunks the writer adds")
    parser.add_argument("--chunk", type=int, default=8000, help="codes per chunk")
    parser.add_argument("--quick", action="store_true", help="200,000 codes, 10 s of pauses")
    parser.add_argument("--json", help="save the rows here")
    args = parser.parse_args()
    if args.quick:
        args.count, args.seconds = 200_000, 10.0
    print(json.dumps(machine_info(faiss=True)), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        g = Path(tmp) / "g"
        start = time.perf_counter()
        monkeypatch = pytest.MonkeyPatch()
        build_synthetic(g, args.count, monkeypatch)
        print(f"gallery of {args.count:,} codes built in {time.perf_counter() - start:.1f} s", flush=True)
        busy = phase(g, Path(tmp) / "busy", args, writer=True)
        rows = [phase(g, Path(tmp) / "quiet", args, writer=False, seconds=busy["seconds"]), busy]
        monkeypatch.undo()
    print(f"\n{args.count:,} codes, k = 10; writer: {args.chunks} x {args.chunk:,} codes in "
          f"{busy['seconds']:.1f} s, then as long without it\n")
    print(HEADER + "\n" + "\n".join(_row(r) for r in rows))
    print(json.dumps({"load_average_end": machine_info()["load_average"]}))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
