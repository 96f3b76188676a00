"""Benchmark: fusnet.eval.metrics mAP against the per-query loop of the public hashing code.

Reference = the loop that DPSH / ADSH / SEMICON-style code runs (``calc_map`` /
``CalcTopMap``): per query one row of the Hamming matrix, one ``np.argsort``, the
relevance vector reordered, AP from the positions of the relevant items. Written
here from that description, with a stable sort so that it is deterministic and
breaks ties by database index (the public code uses the default quicksort,
whose tie order is arbitrary).

Data: random {-1, +1} codes with class structure (class-centre codes, each bit
flipped with a fixed probability), uniform class labels, fixed seeds. Sizes:
CUB-200-2011 (5,794 queries x 5,994 database) and VegFru (116,931 x 29,200),
12 and 48 bits, 200 classes.

The reference at VegFru scale would take long: it is timed on a fixed random
subset of queries and its full time extrapolated per query (printed as such).
Our mAP is checked equal to the reference on every query the reference ran,
and reported on all queries.

Run: ``.venv/bin/python benchmarks/bench_map.py`` (about 2-3 minutes on 2 cores);
``--quick`` for a smaller run, ``--json PATH`` to save the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from machine import machine_info  # benchmarks/ is the script's folder

from fusnet.eval.metrics import evaluate_retrieval
from fusnet.eval.metrics._counting import _retrieval_stats

REQUIRED_SPEEDUP = 20.0


@dataclass
class Row:
    name: str
    bits: int
    num_queries: int
    num_database: int
    ref_queries: int
    ref_seconds_measured: float
    ref_seconds_full: float
    ref_eq_seconds_full: float
    ref_extrapolated: bool
    ours_seconds: float
    ours_record_seconds: float
    speedup: float
    speedup_vs_ref_eq: float
    map_ref_subset: float
    map_ours_subset: float
    max_abs_diff_subset: float
    map_ours: float
    map_tie_aware: float
    peak_rss_increase_mb: float


def make_codes(
    num_queries: int, num_database: int, bits: int, classes: int, flip: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Class-structured {-1, +1} float32 codes and int64 labels."""
    rng = np.random.default_rng(seed)
    centres = rng.choice(np.array([-1.0, 1.0], np.float32), size=(classes, bits))
    q_labels = rng.integers(0, classes, num_queries)
    db_labels = rng.integers(0, classes, num_database)

    def codes(labels: np.ndarray) -> np.ndarray:
        out = centres[labels]
        flips = rng.random(out.shape, dtype=np.float32) < flip
        out[flips] *= -1.0
        return out

    return codes(q_labels), codes(db_labels), q_labels, db_labels


def reference_ap(
    q: np.ndarray,
    db: np.ndarray,
    q_labels: np.ndarray,
    db_labels: np.ndarray,
    rows: np.ndarray,
    one_hot: bool = True,
) -> np.ndarray:
    """Per-query loop of the public code: one Hamming row, one argsort per query.

    ``one_hot=True`` computes relevance as the public code does (one-hot label
    vectors, a dot product per query); ``one_hot=False`` compares class ids, a
    faster variant of the same loop.
    """
    classes = int(max(q_labels.max(), db_labels.max())) + 1
    query_l = np.eye(classes, dtype=np.float32)[q_labels]
    retrieval_l = np.eye(classes, dtype=np.float32)[db_labels]
    bits = q.shape[1]
    out = np.zeros(len(rows))
    for j, i in enumerate(rows):
        if one_hot:
            gnd = (query_l[i] @ retrieval_l.T > 0).astype(np.float32)
        else:
            gnd = (db_labels == q_labels[i]).astype(np.float32)
        tsum = int(gnd.sum())
        if tsum == 0:
            continue
        hamm = 0.5 * (bits - q[i] @ db.T)
        ind = np.argsort(hamm, kind="stable")
        gnd = gnd[ind]
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(gnd == 1)).ravel() + 1.0
        out[j] = np.mean(count / tindex)
    return out


def _rss_mb(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak RSS (VmHWM)
        return True
    except OSError:
        return False


def run_case(
    name: str, nq: int, n: int, bits: int, ref_queries: int | None, flip: float, seed: int
) -> Row:
    q, db, ql, dl = make_codes(nq, n, bits, 200, flip, seed)
    rng = np.random.default_rng(seed + 1)
    rows = np.arange(nq) if ref_queries is None or ref_queries >= nq else np.sort(
        rng.choice(nq, ref_queries, replace=False)
    )
    start = time.perf_counter()
    ref = reference_ap(q, db, ql, dl, rows)
    ref_seconds = time.perf_counter() - start
    ref_full = ref_seconds * nq / len(rows)
    start = time.perf_counter()
    ref_eq = reference_ap(q, db, ql, dl, rows, one_hot=False)
    ref_eq_full = (time.perf_counter() - start) * nq / len(rows)
    assert np.array_equal(ref, ref_eq)

    _reset_peak_rss()
    base = _rss_mb("VmRSS")
    start = time.perf_counter()
    stats = _retrieval_stats(q, db, ql, dl)  # what mean_average_precision(ties="index") runs
    ours_seconds = time.perf_counter() - start
    peak = _rss_mb("VmHWM") - base
    start = time.perf_counter()
    record = evaluate_retrieval(q, db, ql, dl, ks=(100,))  # both conventions + P@k, R@k
    record_seconds = time.perf_counter() - start

    ours_subset = stats.ap_index[rows]
    return Row(
        name=name,
        bits=bits,
        num_queries=nq,
        num_database=n,
        ref_queries=len(rows),
        ref_seconds_measured=ref_seconds,
        ref_seconds_full=ref_full,
        ref_eq_seconds_full=ref_eq_full,
        ref_extrapolated=len(rows) < nq,
        ours_seconds=ours_seconds,
        ours_record_seconds=record_seconds,
        speedup=ref_full / ours_seconds,
        speedup_vs_ref_eq=ref_eq_full / ours_seconds,
        map_ref_subset=float(ref.mean()),
        map_ours_subset=float(ours_subset.mean()),
        max_abs_diff_subset=float(np.abs(ours_subset - ref).max()),
        map_ours=float(record["map"]),
        map_tie_aware=float(record["map_tie_aware"]),
        peak_rss_increase_mb=peak,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--vegfru-ref-queries", type=int, default=1000,
                        help="queries the reference runs at VegFru scale (extrapolated)")
    parser.add_argument("--flip", type=float, default=0.2, help="bit-flip probability")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    info = machine_info(faiss=False)
    print("machine:", json.dumps(info))
    cases = [("CUB-200-2011", 5794, 5994, None), ("VegFru", 116931, 29200, args.vegfru_ref_queries)]
    if args.quick:
        cases = [("CUB/4", 1448, 1498, None), ("VegFru/20", 5846, 1460, 500)]
    rows = []
    for name, nq, n, ref_q in cases:
        for bits in (12, 48):
            row = run_case(name, nq, n, bits, ref_q, args.flip, args.seed + bits)
            rows.append(row)
            print(f"  done {name} {bits} bits", flush=True)

    print()
    header = (f"{'data':<13}{'bits':>5}{'queries x db':>18}{'ref s':>9}{'':2}{'ref-eq s':>9}"
              f"{'ours s':>8}{'speedup':>9}{'vs eq':>7}{'mAP ref':>9}{'mAP ours':>9}"
              f"{'max|diff|':>10}{'tie-aware':>10}{'peak MB':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        star = "*" if r.ref_extrapolated else " "
        print(f"{r.name:<13}{r.bits:>5}{f'{r.num_queries:,} x {r.num_database:,}':>18}"
              f"{r.ref_seconds_full:>9.1f}{star:<2}{r.ref_eq_seconds_full:>9.1f}"
              f"{r.ours_seconds:>8.2f}{r.speedup:>8.0f}x{r.speedup_vs_ref_eq:>6.0f}x"
              f"{r.map_ref_subset:>9.4f}{r.map_ours_subset:>9.4f}{r.max_abs_diff_subset:>10.1e}"
              f"{r.map_tie_aware:>10.4f}{r.peak_rss_increase_mb:>8.0f}")
    print()
    print("ref: the public per-query loop (one-hot label dot product, Hamming row, stable "
          "argsort); ref-eq: the same loop with relevance by class-id comparison (faster).")
    for r in rows:
        if r.ref_extrapolated:
            print(f"* {r.name} {r.bits} bits: references timed on {r.ref_queries:,} fixed random "
                  f"queries ({r.ref_seconds_measured:.1f} s for ref) and extrapolated per query "
                  f"to all {r.num_queries:,}; 'mAP ref'/'mAP ours' are over those queries; our "
                  f"mAP over all queries is {r.map_ours:.4f}.")
    print("ours s: fusnet.eval.metrics index-tie mAP, the work of mean_average_precision; "
          "evaluate_retrieval (both conventions, P@100, R@100) took "
          + ", ".join(f"{r.ours_record_seconds:.2f}" for r in rows) + " s.")
    print("peak MB: increase of the process's peak RSS during our call (VmHWM).")
    print("load average after:", os.getloadavg())
    identical = all(r.max_abs_diff_subset < 1e-9 for r in rows)
    fast = all(r.speedup >= REQUIRED_SPEEDUP for r in rows)
    if args.quick:  # tiny sizes: per-call overheads dominate, only identity is checked
        ok = identical
        print("PASS" if ok else "FAIL", "(identical mAP; speed not judged with --quick)")
    else:
        ok = identical and fast
        print("PASS" if ok else "FAIL",
              f"(identical mAP: {identical}; >= {REQUIRED_SPEEDUP:.0f}x faster than ref: {fast})")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": [asdict(r) for r in rows]}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
