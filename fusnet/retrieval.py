"""Packed binary codes, Hamming distances and exact Hamming top-k search.

Conventions
-----------
* Codes are ``{-1, +1}`` (or any real values: bit = 1 where code > 0) arrays of
  shape ``(n, bits)``. :func:`pack_codes` packs them into ``uint8`` rows of
  ``ceil(bits / 8)`` bytes with ``np.packbits`` (first code dimension = most
  significant bit of byte 0; the last byte zero-padded).
* Top-k results are sorted by Hamming distance and ties are broken by database
  index (smallest first): the result is unique and deterministic, whatever the
  backend, chunk size or thread count.

Backends
--------
:func:`hamming_topk` is numpy only: XOR + ``np.bitwise_count`` over 64-bit words,
a per-query distance threshold (the k-th best distance so far) that lets only
strictly closer items through (later items have larger indices, so a tie with
the k-th cannot enter), and an exact merge. Query chunks run on
``torch.get_num_threads()`` threads.

:class:`HammingIndex` adds a faiss backend (``faiss.IndexBinaryFlat``) for large
databases. Codes are zero-padded to a multiple of 64 bits (Hamming distances
unchanged; faiss has fast kernels for whole 64-bit words and needs a multiple of
8 bits anyway), and the index uses faiss's counting-sort k-NN
(``use_heap = False``, ``hammings_knn_mc``) which scans the database in index
order and keeps, per distance, the first items met: ties broken by index, the
same result as the numpy path. Query parts run on ``torch.get_num_threads()``
Python threads with one OpenMP thread each (robust when the cores are shared). Above k = 4096 (where that needs
32 x (bits + 1) x k ids of memory) it uses faiss's heap k-NN, whose heap
compares (distance, id) pairs, again index order. Both are checked against the
numpy path in the tests on codes with many ties.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

ArrayLike = Tensor | np.ndarray
Backend = Literal["auto", "numpy", "faiss"]

# Query rows x database items per block of the numpy top-k (keeps the XOR buffer in L2).
_TOPK_ROWS = 16
_TOPK_BLOCK = 8192
# Elements of one chunk of the full distance matrix.
_DIST_ELEMENTS = 1 << 22
# faiss's counting k-NN holds 32 queries x (bits + 1) x k ids; above this k, its heap k-NN.
_FAISS_MC_MAX_K = 4096
# Queries per faiss call at least (faiss's counting k-NN works in batches of 32).
_FAISS_PART = 32


# --- packing ---------------------------------------------------------------------------------


def pack_codes(codes: ArrayLike) -> np.ndarray:
    """Pack codes into bytes: bit = 1 where code > 0 (``np.packbits`` order).

    Args:
        codes: (n, bits) codes in {-1, +1} (or real values, thresholded at 0).

    Returns:
        (n, ceil(bits / 8)) uint8, the last byte zero-padded.
    """
    arr = codes.detach().cpu().numpy() if isinstance(codes, Tensor) else np.asarray(codes)
    if arr.ndim != 2:
        raise ValueError(f"codes must have shape (n, bits), got {arr.shape}")
    return np.packbits(arr > 0, axis=1)


def unpack_codes(packed: np.ndarray, bits: int, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Inverse of :func:`pack_codes`.

    Args:
        packed: (n, ceil(bits / 8)) uint8.
        bits: code length.
        dtype: output dtype.

    Returns:
        (n, bits) codes in {-1, +1}.
    """
    packed = _check_packed(packed, "packed")
    if packed.shape[1] != (bits + 7) // 8:
        raise ValueError(
            f"{bits}-bit codes pack into {(bits + 7) // 8} bytes, got {packed.shape[1]}"
        )
    ones = np.unpackbits(packed, axis=1, count=bits)  # (n, bits) in {0, 1}
    return (ones.astype(dtype) * 2 - 1).astype(dtype)


def _check_packed(packed: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(packed)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(
            f"{name} must be a 2-D uint8 array from pack_codes, got {arr.dtype} {arr.shape}"
        )
    return np.ascontiguousarray(arr)


def _check_pair(query_packed: np.ndarray, db_packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = _check_packed(query_packed, "query_packed")
    db = _check_packed(db_packed, "db_packed")
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"code widths differ: {q.shape[1]} bytes (queries) vs {db.shape[1]} (database)")
    return q, db


def _to_words(packed: np.ndarray) -> np.ndarray:
    """(n, nbytes) uint8 -> (n, ceil(nbytes / 8)) uint64, zero-padded (popcounts unchanged)."""
    n, nbytes = packed.shape
    words = -(-nbytes // 8)
    if nbytes == words * 8:
        return np.ascontiguousarray(packed).view(np.uint64)
    padded = np.zeros((n, words * 8), np.uint8)
    padded[:, :nbytes] = packed
    return padded.view(np.uint64)


def _dist_dtype(words: int) -> type:
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


# --- the index -------------------------------------------------------------------------------


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class HammingIndex:
    """Exact Hamming k-NN over packed codes, ties broken by database index.

    Example:
        >>> index = HammingIndex(48)
        >>> index.add(pack_codes(db_codes))
        >>> distances, indices = index.search(pack_codes(query_codes), k=100)

    Args:
        bits: code length.
        backend: "numpy" (:func:`hamming_topk`), "faiss" (``IndexBinaryFlat``
            on codes zero-padded to a multiple of 64 bits) or "auto" (faiss
            when importable, numpy otherwise).

    Searches may run concurrently from several threads, except faiss searches
    with k on both sides of 4096 (the switch between faiss's two k-NN modes is
    a setting of the shared faiss index).
    """

    def __init__(self, bits: int, backend: Backend = "auto") -> None:
        if bits < 1:
            raise ValueError(f"bits must be >= 1, got {bits}")
        if backend not in ("auto", "numpy", "faiss"):
            raise ValueError(f"backend must be 'auto', 'numpy' or 'faiss', got {backend!r}")
        if backend == "faiss" and not _faiss_available():
            raise ImportError("backend='faiss' needs faiss (pip install faiss-cpu)")
        self.bits = bits
        self.nbytes = (bits + 7) // 8
        self.backend = backend
        self._use_faiss = backend == "faiss" or (backend == "auto" and _faiss_available())
        self._parts: list[np.ndarray] = []  # numpy backend only
        self._packed: np.ndarray | None = None
        self._faiss_index = None
        self._padded_bytes = -(-self.nbytes // 8) * 8
        self._ntotal = 0

    @property
    def uses_faiss(self) -> bool:
        """Whether searches run on faiss (backend "faiss", or "auto" with faiss installed)."""
        return self._use_faiss

    @property
    def ntotal(self) -> int:
        """Number of database codes added."""
        return self._ntotal

    def add(self, packed: np.ndarray) -> None:
        """Append database codes (their indices continue from ``ntotal``).

        Args:
            packed: (n, ceil(bits / 8)) uint8 from :func:`pack_codes`.
        """
        packed = _check_packed(packed, "packed")
        if packed.shape[1] != self.nbytes:
            raise ValueError(f"{self.bits}-bit codes take {self.nbytes} bytes, got {packed.shape[1]}")
        if self._use_faiss:
            self._faiss().add(self._pad(packed))
        else:
            self._parts.append(packed.copy())
            self._packed = None
        self._ntotal += len(packed)

    def reset(self) -> None:
        """Remove every database code."""
        self._parts, self._packed, self._faiss_index, self._ntotal = [], None, None, 0

    def search(self, query_packed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest database codes per query.

        Args:
            query_packed: (nq, ceil(bits / 8)) uint8.
            k: neighbours per query, 1 <= k <= ntotal.

        Returns:
            distances (nq, k) int32 and indices (nq, k) int64, sorted by
            distance then index.
        """
        q = _check_packed(query_packed, "query_packed")
        if q.shape[1] != self.nbytes:
            raise ValueError(f"{self.bits}-bit codes take {self.nbytes} bytes, got {q.shape[1]}")
        n = self.ntotal
        if not 1 <= k <= n:
            raise ValueError(f"k must be between 1 and the database size {n}, got {k}")
        if self._use_faiss:
            return self._faiss_search(self._pad(q), k)
        return hamming_topk(q, self._database(), k)

    def _faiss_search(self, padded: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss search, query parts on ``torch.get_num_threads()`` threads.

        Each worker thread runs faiss with one OpenMP thread (a per-thread
        setting: the caller's is untouched). On shared cores this is several
        times faster than faiss's own OpenMP loop, whose threads wait for each
        other at every database block.
        """
        import faiss

        index = self._faiss()
        # counting-sort k-NN (index order per distance) up to k = 4096; above, the heap k-NN,
        # whose heap compares (distance, id) pairs (faiss >= 1.7.3): index order as well
        index.use_heap = k > _FAISS_MC_MAX_K
        workers = _workers(len(padded))
        size = max(_FAISS_PART, -(-len(padded) // (4 * workers)))
        parts = [padded[s : s + size] for s in range(0, len(padded), size)]

        def run(part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            faiss.omp_set_num_threads(1)
            return index.search(part, k)

        with ThreadPoolExecutor(min(workers, len(parts))) as pool:
            results = list(pool.map(run, parts))
        distances = np.concatenate([r[0] for r in results]).astype(np.int32)
        indices = np.concatenate([r[1] for r in results]).astype(np.int64)
        if (indices < 0).any():  # cannot happen for k <= ntotal; guards faiss changes
            raise RuntimeError("faiss returned fewer than k neighbours")
        return distances, indices

    def _database(self) -> np.ndarray:
        if self._packed is None:
            self._packed = (
                np.concatenate(self._parts) if self._parts else np.zeros((0, self.nbytes), np.uint8)
            )
            self._parts = [self._packed]
        return self._packed

    def _pad(self, packed: np.ndarray) -> np.ndarray:
        if self._padded_bytes == self.nbytes:
            return packed
        out = np.zeros((len(packed), self._padded_bytes), np.uint8)
        out[:, : self.nbytes] = packed
        return out

    def _faiss(self) -> Any:  # faiss.IndexBinaryFlat (faiss has no type stubs)
        if self._faiss_index is None:
            import faiss

            self._faiss_index = faiss.IndexBinaryFlat(self._padded_bytes * 8)
        return self._faiss_index
