"""Hamming distances and exact top-k search over packed codes, numpy only.

XOR + ``np.bitwise_count`` over 64-bit words. :func:`hamming_topk` keeps a
per-query distance threshold (the k-th best distance so far) that lets only
strictly closer items through (later items have larger indices, so a tie with
the k-th cannot enter), and merges exactly: ties are broken by database index.
Query chunks run on ``torch.get_num_threads()`` threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from fusnet.eval.retrieval.packing import _check_pair, _to_words

# Query rows x database items per block of the numpy top-k (keeps the XOR buffer in L2).
_TOPK_ROWS = 16
_TOPK_BLOCK = 8192
# Elements of one chunk of the full distance matrix.
_DIST_ELEMENTS = 1 << 22


def _dist_dtype(words: int) -> type:
    """The narrowest unsigned dtype that holds a distance over ``words`` 64-bit words."""
    return np.uint8 if words * 64 <= 255 else np.uint16


def _popcount_into(qw: np.ndarray, dbw: np.ndarray, xor: np.ndarray, dist: np.ndarray) -> None:
    """dist[i, j] = popcount(qw[i] ^ dbw[j]).

    Args:
        qw: (Qc, W) uint64 query words.
        dbw: (w, W) uint64 database words.
        xor: (Qc, w) uint64 scratch.
        dist: (Qc, w) output (uint8 or uint16).
    """
    np.bitwise_xor(qw[:, None, 0], dbw[None, :, 0], out=xor)
    np.bitwise_count(xor, out=dist, casting="unsafe")
    for j in range(1, qw.shape[1]):
        np.bitwise_xor(qw[:, None, j], dbw[None, :, j], out=xor)
        dist += np.bitwise_count(xor).astype(dist.dtype)


def _workers(tasks: int) -> int:
    """Worker threads for ``tasks`` chunks: at most ``torch.get_num_threads()``."""
    return max(1, min(torch.get_num_threads(), tasks))


# --- distances and top-k ---------------------------------------------------------------------


def hamming_distance(
    query_packed: np.ndarray, db_packed: np.ndarray, chunk_size: int | None = None
) -> np.ndarray:
    """All Hamming distances between packed codes (XOR + popcount).

    Args:
        query_packed: (nq, nbytes) uint8 from :func:`pack_codes`.
        db_packed: (N, nbytes) uint8.
        chunk_size: queries per chunk (None: from a memory budget).

    Returns:
        (nq, N) int32 distances.
    """
    q, db = _check_pair(query_packed, db_packed)
    qw, dbw = _to_words(q), _to_words(db)
    nq, n = len(qw), len(dbw)
    out = np.empty((nq, n), np.int32)
    step = chunk_size or max(1, _DIST_ELEMENTS // max(n, 1))
    dtype = _dist_dtype(qw.shape[1])

    def run(s: int) -> None:
        rows = qw[s : s + step]
        xor = np.empty((len(rows), n), np.uint64)
        dist = np.empty((len(rows), n), dtype)
        _popcount_into(rows, dbw, xor, dist)
        out[s : s + step] = dist

    starts = range(0, nq, step)
    with ThreadPoolExecutor(_workers(len(starts))) as pool:
        list(pool.map(run, starts))
    return out


def hamming_topk(
    query_packed: np.ndarray, db_packed: np.ndarray, k: int, chunk_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest database codes by Hamming distance, ties by database index.

    Args:
        query_packed: (nq, nbytes) uint8 from :func:`pack_codes`.
        db_packed: (N, nbytes) uint8.
        k: neighbours per query, 1 <= k <= N.
        chunk_size: queries per chunk (default 16).

    Returns:
        distances (nq, k) int32 (non-decreasing along a row) and indices
        (nq, k) int64; equal distances appear in increasing index order.
    """
    q, db = _check_pair(query_packed, db_packed)
    n = len(db)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the database size {n}, got {k}")
    qw, dbw = _to_words(q), _to_words(db)
    nq = len(qw)
    distances = np.empty((nq, k), np.int32)
    indices = np.empty((nq, k), np.int64)
    step = chunk_size or _TOPK_ROWS

    def run(s: int) -> None:
        dist, idx = _topk_rows(qw[s : s + step], dbw, k)
        distances[s : s + step] = dist
        indices[s : s + step] = idx

    starts = range(0, nq, step)
    with ThreadPoolExecutor(_workers(len(starts))) as pool:
        list(pool.map(run, starts))
    return distances, indices


def _topk_rows(qw: np.ndarray, dbw: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k for a chunk of queries: (Qc, W) words -> (Qc, k) distances and indices.

    Keys are ``dist * N + index`` (int64), so sorting keys sorts by distance then
    index. The first block is selected with ``np.partition``; afterwards only
    items strictly closer than the query's current k-th distance pass, are
    collected, and are merged with the current best when enough have piled up.
    """
    qc, words = qw.shape
    n = len(dbw)
    dtype = _dist_dtype(words)
    block = min(n, max(_TOPK_BLOCK, k))
    xor = np.empty((qc, block), np.uint64)
    dist = np.empty((qc, block), dtype)
    mask = np.empty((qc, block), bool)

    _popcount_into(qw, dbw[:block], xor, dist)
    keys = dist.astype(np.int64) * n + np.arange(block)  # (Qc, block)
    if block > k:
        keys = np.partition(keys, k - 1, axis=1)[:, :k]
    best = np.sort(keys, axis=1)  # (Qc, k) ascending
    tau = (best[:, k - 1] // n)[:, None].astype(dtype)  # (Qc, 1) current k-th distance
    pending_rows: list[np.ndarray] = []
    pending_keys: list[np.ndarray] = []
    pending = 0
    for s in range(block, n, block):
        w = min(block, n - s)
        d, m = dist[:, :w], mask[:, :w]
        _popcount_into(qw, dbw[s : s + w], xor[:, :w], d)
        np.less(d, tau, out=m)  # strictly closer than the k-th: only these can enter
        flat = np.flatnonzero(m)  # 1-D nonzero: far faster than the 2-D one
        if len(flat) == 0:
            continue
        rr, cc = np.divmod(flat, w)
        pending_rows.append(rr)
        pending_keys.append(d[rr, cc].astype(np.int64) * n + (cc + s))
        pending += len(rr)
        if pending >= qc * k:
            best = _merge(best, np.concatenate(pending_rows), np.concatenate(pending_keys), n)
            tau = (best[:, k - 1] // n)[:, None].astype(dtype)
            pending_rows, pending_keys, pending = [], [], 0
    if pending:
        best = _merge(best, np.concatenate(pending_rows), np.concatenate(pending_keys), n)
    return (best // n).astype(np.int32), best % n


def _merge(best: np.ndarray, rows: np.ndarray, keys: np.ndarray, n: int) -> np.ndarray:
    """Keep the k smallest keys per row of ``best`` (Qc, k) plus candidates (rows, keys)."""
    qc, k = best.shape
    span = (keys.max(initial=0) // n + 1) * n  # > every candidate key
    span = max(span, int(best.max()) + 1)
    all_rows = np.concatenate([np.repeat(np.arange(qc), k), rows])
    comp = np.concatenate([best.ravel(), keys]) + all_rows * span  # row-major composite
    comp.sort()
    row = comp // span
    start = np.searchsorted(row, np.arange(qc))  # every row holds >= k entries
    rank = np.arange(len(comp)) - start[row]
    keep = rank < k
    out = np.empty_like(best)
    out[row[keep], rank[keep]] = comp[keep] - row[keep] * span
    return out
