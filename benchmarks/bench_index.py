"""Benchmark: gallery index backends at scale, exact flat vs faiss's approximate binary indexes.

Data: class-structured 48-bit codes as in ``bench_map.py`` (200 class-centre codes,
each bit flipped with probability 0.2; queries drawn the same way), fixed seed,
generated packed in chunks.

For each database size (``--sizes``) the run measures, on the threads given
(``torch.get_num_threads()`` Python threads for the flat index, faiss's OpenMP
threads for the others):

* ``flat``: ``fusnet.index.backends.FlatBackend`` (``HammingIndex`` on faiss
  ``IndexBinaryFlat``), exact, ties by id. Its top-100 is the ground truth.
* ``ivf``: ``IVFBackend`` (faiss ``IndexBinaryIVF``) for each ``--nlist`` and,
  per build, every ``--nprobe``.
* optionally (``--others``) faiss ``IndexBinaryHNSW`` and ``IndexBinaryMultiHash``
  at the first size only, to choose the approximate kind.

Columns: build seconds (train + add), index memory (codes, ids, centroids or
graph, estimated from the structures' sizes), queries/s, and recall@10 / @100
against the exact index, two ways:

* ``recall`` (tie-aware): the share of returned hits whose distance is among the
  exact top-k's distances (multiset intersection): any valid top-k, whichever of
  the equally distant codes it holds, scores 1. With 48-bit codes the k-th
  distance ties with thousands of codes at these sizes, so this is the measure
  that says whether the answer is as good as the exact one.
* ``id recall``: the share of the exact top-k ids returned (strict; equally close
  codes outside the exact tie order count as misses).

Run (one core): ``taskset -c 1 env OMP_NUM_THREADS=1 .venv/bin/python
benchmarks/bench_index.py --sizes 10000000``; ``--quick`` for 200,000 codes.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine_info  # benchmarks/ is the script's folder

from fusnet.index.backends import FlatBackend, IVFBackend, pad_to_words

BITS = 48
CLASSES = 200
FLIP = 0.2


def make_codes(n: int, seed: int, chunk: int = 1 << 20) -> np.ndarray:
    """(n, 6) packed class-structured codes (centres from seed 0, noise from ``seed``)."""
    centres = np.packbits(np.random.default_rng(0).random((CLASSES, BITS)) < 0.5, axis=1)  # (C, 6)
    rng = np.random.default_rng(seed)
    out = np.empty((n, BITS // 8), np.uint8)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        labels = rng.integers(0, CLASSES, m)
        noise = np.packbits(rng.random((m, BITS), dtype=np.float32) < FLIP, axis=1)  # (m, 6)
        out[s : s + m] = centres[labels] ^ noise
    return out


def recalls(d_approx: np.ndarray, i_approx: np.ndarray, d_exact: np.ndarray, i_exact: np.ndarray,
            k: int) -> tuple[float, float]:
    """Tie-aware recall@k (distance multiset overlap) and id recall@k."""
    nq = len(d_exact)
    valid = i_approx[:, :k] >= 0
    rows = np.repeat(np.arange(nq), k).reshape(nq, k)
    width = BITS + 2
    da = np.where(valid, d_approx[:, :k], BITS + 1)
    ha = np.bincount((rows * width + da)[valid], minlength=nq * width).reshape(nq, width)
    he = np.bincount((rows * width + d_exact[:, :k]).ravel(), minlength=nq * width).reshape(nq, width)
    tie_aware = np.minimum(ha, he).sum() / (nq * k)
    hits = sum(len(np.intersect1d(a[a >= 0], e)) for a, e in zip(i_approx[:, :k], i_exact[:, :k], strict=True))
    return float(tie_aware), hits / (nq * k)


def timed_search(search, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Results and queries/s of one call (after a warm-up call on 8 queries)."""
    search(queries[:8], k)
    start = time.perf_counter()
    d, i = search(queries, k)
    return d, i, len(queries) / (time.perf_counter() - start)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_size(n: int, args: argparse.Namespace, rows: list[dict], others: bool) -> None:
    start = time.perf_counter()
    db = make_codes(n, seed=1)
    queries = make_codes(args.queries, seed=2)
    print(f"\n== {n:,} codes ({time.perf_counter() - start:.1f} s to generate)", flush=True)

    start = time.perf_counter()
    flat = FlatBackend(BITS)
    flat.add(db)
    build = time.perf_counter() - start
    d_exact, i_exact, qps_flat = timed_search(flat.search, queries, 100)
    flat_mb = n * 8 / 2**20  # padded to 8 bytes
    rows.append(dict(n=n, index="flat", params="exact", build_s=build, memory_mb=flat_mb,
                     qps=qps_flat, speedup=1.0, recall10=1.0, recall100=1.0,
                     id_recall10=1.0, id_recall100=1.0))
    print(_row(rows[-1]), flush=True)
    del flat

    for nlist in args.nlist:
        start = time.perf_counter()
        ivf = IVFBackend(BITS, nlist=nlist, nprobe=1)
        ivf.add(db)
        build = time.perf_counter() - start
        memory = (n * (8 + 8) + nlist * 8) / 2**20  # padded codes + ids + centroids
        for nprobe in args.nprobe:
            if nprobe > nlist:
                continue
            ivf.nprobe = nprobe
            d, i, qps = timed_search(ivf.search, queries, 100)
            r10, id10 = recalls(d, i, d_exact, i_exact, 10)
            r100, id100 = recalls(d, i, d_exact, i_exact, 100)
            rows.append(dict(n=n, index="ivf", params=f"nlist={nlist} nprobe={nprobe}", build_s=build,
                             memory_mb=memory, qps=qps, speedup=qps / qps_flat, recall10=r10,
                             recall100=r100, id_recall10=id10, id_recall100=id100))
            print(_row(rows[-1]), flush=True)
        del ivf
    if others:
        _others(db, queries, d_exact, i_exact, qps_flat, rows)


def _others(db, queries, d_exact, i_exact, qps_flat, rows) -> None:
    """faiss IndexBinaryHNSW and IndexBinaryMultiHash, for the choice of the approximate kind."""
    import faiss

    n = len(db)
    padded, q = pad_to_words(db), pad_to_words(queries)
    start = time.perf_counter()
    hnsw = faiss.IndexBinaryHNSW(64, 32)
    hnsw.add(padded)
    build = time.perf_counter() - start
    for ef in (64, 256, 1024):
        hnsw.hnsw.efSearch = ef
        d, i, qps = timed_search(hnsw.search, q, 100)
        _approx_row(rows, n, "hnsw", f"M=32 efSearch={ef}", build, n * (8 + 32 * 2 * 4) / 2**20,
                    d, i, qps, qps_flat, d_exact, i_exact)
    del hnsw
    for nhash, b in ((3, 16), (2, 24)):
        start = time.perf_counter()
        mh = faiss.IndexBinaryMultiHash(64, nhash, b)
        mh.add(padded)
        build = time.perf_counter() - start
        for nflip in (0, 1, 2):
            mh.nflip = nflip
            d, i, qps = timed_search(mh.search, q, 100)
            _approx_row(rows, n, "multihash", f"nhash={nhash} b={b} nflip={nflip}", build,
                        n * (8 + nhash * 8) / 2**20, d, i, qps, qps_flat, d_exact, i_exact)
        del mh


def _approx_row(rows, n, name, params, build, memory, d, i, qps, qps_flat, d_exact, i_exact) -> None:
    order = np.lexsort((np.where(i < 0, 2**62, i), np.where(i < 0, 2**31, d)), axis=1)
    d, i = np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1)
    r10, id10 = recalls(d, i, d_exact, i_exact, 10)
    r100, id100 = recalls(d, i, d_exact, i_exact, 100)
    rows.append(dict(n=n, index=name, params=params, build_s=build, memory_mb=memory, qps=qps,
                     speedup=qps / qps_flat, recall10=r10, recall100=r100, id_recall10=id10,
                     id_recall100=id100))
    print(_row(rows[-1]), flush=True)


HEADER = ("| codes | index | parameters | build s | memory MB | queries/s | vs flat | recall@10 | "
          "recall@100 | id recall@10 | id recall@100 |\n|---|---|---|---|---|---|---|---|---|---|---|")


def _row(r: dict) -> str:
    return (f"| {r['n']:,} | {r['index']} | {r['params']} | {r['build_s']:.1f} | {r['memory_mb']:.0f} | "
            f"{r['qps']:.1f} | {r['speedup']:.1f}x | {r['recall10']:.4f} | {r['recall100']:.4f} | "
            f"{r['id_recall10']:.3f} | {r['id_recall100']:.3f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000_000, 100_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--nlist", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    parser.add_argument("--others", action="store_true", help="also HNSW and MultiHash (first size)")
    parser.add_argument("--quick", action="store_true", help="200,000 codes, nlist 256")
    parser.add_argument("--json", help="save the rows here")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.nlist = [200_000], [256]
    info = machine_info(faiss=True)
    print(json.dumps(info), flush=True)
    print(f"torch threads {torch.get_num_threads()}; {args.queries} queries, k = 100")
    print(HEADER)
    rows: list[dict] = []
    wall = time.perf_counter()
    for number, n in enumerate(args.sizes):
        run_size(n, args, rows, others=args.others and number == 0)
    print(f"\nwall {time.perf_counter() - wall:.0f} s, peak RSS {peak_mb():.0f} MB")
    print("\n" + HEADER + "\n" + "\n".join(_row(r) for r in rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
