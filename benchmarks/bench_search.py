"""Benchmark: exact Hamming top-k (k = 100) over 1,000,000 database codes, 48 and 64 bits.

Methods (1,000 queries, uniform random codes, fixed seed):

* ``faiss IndexBinaryFlat`` (reference): faiss's exact binary index on the codes
  as they are (6 bytes at 48 bits, 8 at 64), default settings (OpenMP threads),
  and again with one OpenMP thread (on shared cores OpenMP's threads wait for
  each other and that can be faster). "vs faiss" compares with the faster of the
  two, measured in the same run.
* ``numpy brute force`` (reference): popcount of XOR for every pair, then a stable
  argsort per query; by construction ties broken by database index. Its result
  is the ground truth every other method is checked against, element by element.
* ``fusnet hamming_topk`` (ours, numpy only): XOR + popcount over 64-bit words, a
  per-query threshold (the k-th distance so far) filtering the database, exact
  merge; query chunks on ``torch.get_num_threads()`` threads.
* ``fusnet HammingIndex(faiss)`` (ours, the "auto" backend when faiss is
  installed): faiss's own ``IndexBinaryFlat`` kernels on codes zero-padded to a
  multiple of 64 bits, with its counting-sort k-NN (ties by index), query parts
  on Python threads with one OpenMP thread each.

Every method but the brute force is timed ``--repeat`` times (best kept).

Popcount limits (distances only, no selection; queries/s upper bounds):

* numpy: XOR + ``np.bitwise_count`` over the database words into cache-sized
  buffers, on the same threads.
* C: a ``gcc -O3 -march=native`` loop counting ``popcount(q ^ x) < t`` over the
  database (compiled on the fly if a C compiler is found), on the same threads.

Run: ``.venv/bin/python benchmarks/bench_search.py`` (about a minute on 2 cores);
``--quick`` for a smaller run, ``--json PATH`` to save the figures.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from machine import machine_info  # benchmarks/ is the script's folder

from fusnet.eval.retrieval import HammingIndex, _to_words, hamming_topk

C_KERNEL = r"""
#include <stdint.h>
long long scan_count(const uint64_t* q, long long nq, const uint64_t* db, long long n, int thr) {
    long long total = 0;
    for (long long i = 0; i < nq; i++) {
        const uint64_t qi = q[i];
        long long c = 0;
        for (long long j = 0; j < n; j++) c += __builtin_popcountll(qi ^ db[j]) < thr;
        total += c;
    }
    return total;
}
"""


def brute_force(q: np.ndarray, db: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every distance, then a stable argsort per query (numpy radix sort on uint8)."""
    qw, dbw = _to_words(q), _to_words(db)
    dist = np.empty((len(qw), k), np.int32)
    idx = np.empty((len(qw), k), np.int64)
    for i in range(len(qw)):
        d = np.bitwise_count(qw[i] ^ dbw).sum(axis=1, dtype=np.uint8)  # (N,)
        order = np.argsort(d, kind="stable")[:k]
        dist[i], idx[i] = d[order], order
    return dist, idx


def numpy_popcount_bound(q: np.ndarray, db: np.ndarray, workers: int) -> float:
    """Seconds for XOR + popcount of every pair (64-bit words), no selection."""
    qw, dbw = _to_words(q)[:, 0], _to_words(db)[:, 0]
    block = 8192

    def run(part: np.ndarray) -> None:
        xor = np.empty((len(part), block), np.uint64)
        cnt = np.empty((len(part), block), np.uint8)
        for s in range(0, len(dbw), block):
            w = min(block, len(dbw) - s)
            np.bitwise_xor(part[:, None], dbw[None, s : s + w], out=xor[:, :w])
            np.bitwise_count(xor[:, :w], out=cnt[:, :w])

    parts = [qw[i : i + 16] for i in range(0, len(qw), 16)]
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, parts))
    return time.perf_counter() - start


def compile_c_kernel(tmp: Path) -> ctypes.CDLL | None:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    src, lib = tmp / "scan.c", tmp / "scan.so"
    src.write_text(C_KERNEL)
    try:
        subprocess.run(
            [compiler, "-O3", "-march=native", "-shared", "-fPIC", str(src), "-o", str(lib)],
            check=True, capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    dll = ctypes.CDLL(str(lib))
    dll.scan_count.restype = ctypes.c_longlong
    dll.scan_count.argtypes = [ctypes.c_void_p, ctypes.c_longlong, ctypes.c_void_p,
                               ctypes.c_longlong, ctypes.c_int]
    return dll


def c_popcount_bound(dll: ctypes.CDLL, q: np.ndarray, db: np.ndarray, workers: int) -> float:
    """Seconds for a compiled popcount-and-compare scan of every pair."""
    qw = np.ascontiguousarray(_to_words(q)[:, 0])
    dbw = np.ascontiguousarray(_to_words(db)[:, 0])
    parts = np.array_split(qw, workers)

    def run(part: np.ndarray) -> int:
        return dll.scan_count(part.ctypes.data, len(part), dbw.ctypes.data, len(dbw), 20)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:  # ctypes releases the GIL
        list(pool.map(run, parts))
    return time.perf_counter() - start


def timed(
    fn: Callable[[], tuple[np.ndarray, np.ndarray]], repeat: int = 1
) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """Best wall time of ``repeat`` runs, and the last result."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def run_bits(
    bits: int, n: int, nq: int, k: int, seed: int, dll: ctypes.CDLL | None, repeat: int
) -> dict:
    rng = np.random.default_rng(seed)
    nbytes = (bits + 7) // 8
    db = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    q = rng.integers(0, 256, size=(nq, nbytes), dtype=np.uint8)
    workers = torch.get_num_threads()
    results: dict[str, dict] = {}

    seconds, truth = timed(lambda: brute_force(q, db, k))
    results["numpy brute force (ref)"] = {"seconds": seconds, "identical": True}

    try:
        import faiss

        index = faiss.IndexBinaryFlat(nbytes * 8)
        index.add(db)
        index.search(q[:4], k)  # warm-up
        seconds, (dist, idx) = timed(lambda: index.search(q, k), repeat)
        same = np.array_equal(dist, truth[0]) and np.array_equal(idx, truth[1])
        results["faiss IndexBinaryFlat (ref)"] = {"seconds": seconds, "identical": same}
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            seconds, (dist, idx) = timed(lambda: index.search(q, k), repeat)
        finally:
            faiss.omp_set_num_threads(threads)
        same = np.array_equal(dist, truth[0]) and np.array_equal(idx, truth[1])
        results["faiss, 1 OpenMP thread (ref)"] = {"seconds": seconds, "identical": same}
    except ImportError:
        pass

    hamming_topk(q[:4], db, k)  # warm-up
    seconds, (dist, idx) = timed(lambda: hamming_topk(q, db, k), repeat)
    same = np.array_equal(dist, truth[0]) and np.array_equal(idx, truth[1])
    results["fusnet hamming_topk (numpy)"] = {"seconds": seconds, "identical": same}

    if "faiss IndexBinaryFlat (ref)" in results:
        ours = HammingIndex(bits, backend="faiss")
        ours.add(db)
        ours.search(q[:4], k)
        seconds, (dist, idx) = timed(lambda: ours.search(q, k), repeat)
        same = np.array_equal(dist, truth[0]) and np.array_equal(idx, truth[1])
        results["fusnet HammingIndex (faiss)"] = {"seconds": seconds, "identical": same}

    bounds = {"numpy popcount bound": min(
        numpy_popcount_bound(q, db, workers) for _ in range(repeat))}
    if dll is not None:
        c_popcount_bound(dll, q[:8], db, workers)  # warm-up
        bounds["C popcount bound"] = min(
            c_popcount_bound(dll, q, db, workers) for _ in range(repeat))
    for r in results.values():
        r["qps"] = nq / r["seconds"]
    return {"bits": bits, "n": n, "nq": nq, "k": k, "methods": results,
            "bounds": {name: {"seconds": s, "qps": nq / s} for name, s in bounds.items()}}


def _faiss_qps(methods: dict) -> float | None:
    """Throughput of the faster faiss reference configuration."""
    qps = [r["qps"] for name, r in methods.items() if name.startswith("faiss")]
    return max(qps) if qps else None


def print_table(res: dict) -> None:
    methods, bounds = res["methods"], res["bounds"]
    faiss_qps = _faiss_qps(methods)
    bound_name = "C popcount bound" if "C popcount bound" in bounds else "numpy popcount bound"
    bound_qps = bounds[bound_name]["qps"]
    print(f"\n{res['bits']} bits, {res['n']:,} database codes, {res['nq']:,} queries, k = {res['k']}")
    header = (f"{'method':<32}{'seconds':>9}{'queries/s':>11}{'vs faiss':>10}"
              f"{'of ' + bound_name.split()[0] + ' bound':>16}{'identical':>11}")
    print(header)
    print("-" * len(header))
    for name, r in methods.items():
        vs = f"{r['qps'] / faiss_qps:.2f}x" if faiss_qps else "-"
        print(f"{name:<32}{r['seconds']:>9.2f}{r['qps']:>11.0f}{vs:>10}"
              f"{r['qps'] / bound_qps:>15.1%}{'yes' if r['identical'] else 'NO':>11}")
    for name, b in bounds.items():
        print(f"{name + ' (no top-k)':<32}{b['seconds']:>9.2f}{b['qps']:>11.0f}"
              f"{'':>10}{b['qps'] / bound_qps:>15.1%}{'':>11}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 codes, 200 queries")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method (best kept)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    n, nq = (100_000, 200) if args.quick else (1_000_000, 1000)

    info = machine_info(faiss=True)
    print("machine:", json.dumps(info))
    with tempfile.TemporaryDirectory() as tmp:
        dll = compile_c_kernel(Path(tmp))
        if dll is None:
            print("no C compiler: the C popcount bound is skipped")
        results = [
            run_bits(bits, n, nq, args.k, args.seed + bits, dll, args.repeat) for bits in (48, 64)
        ]
    for res in results:
        print_table(res)
    print("\nvs faiss: throughput ratio to the faster faiss IndexBinaryFlat configuration on "
          "the raw codes, same run. 'of bound': throughput as a fraction of the popcount bound "
          "(distances only, no top-k selection).")
    print("load average after:", os.getloadavg())
    identical = all(r["identical"] for res in results for r in res["methods"].values())
    faiss_ok = all(
        res["methods"]["fusnet HammingIndex (faiss)"]["qps"] >= _faiss_qps(res["methods"])
        for res in results if "faiss IndexBinaryFlat (ref)" in res["methods"]
    )
    print("PASS" if identical and faiss_ok else "FAIL",
          f"(identical top-k: {identical}; ours >= faiss throughput: {faiss_ok})")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=2))
    return 0 if identical and faiss_ok else 1


if __name__ == "__main__":
    sys.exit(main())
