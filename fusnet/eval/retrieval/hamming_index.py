""":class:`HammingIndex`: exact Hamming k-NN over packed codes, numpy or faiss.

The faiss backend (``faiss.IndexBinaryFlat``) is for large databases. Codes are
zero-padded to a multiple of 64 bits (Hamming distances unchanged; faiss has fast
kernels for whole 64-bit words and needs a multiple of 8 bits anyway), and the index
uses faiss's counting-sort k-NN (``use_heap = False``, ``hammings_knn_mc``) which
scans the database in index order and keeps, per distance, the first items met: ties
broken by index, the same result as the numpy path (:func:`hamming_topk`). Query parts
run on ``torch.get_num_threads()`` Python threads with one OpenMP thread each (robust
when the cores are shared). Above k = 4096 (where that needs 32 x (bits + 1) x k ids
of memory) it uses faiss's heap k-NN, whose heap compares (distance, id) pairs, again
index order.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np

from fusnet.eval.retrieval.packing import _check_packed
from fusnet.eval.retrieval.topk import _workers, hamming_topk

Backend = Literal["auto", "numpy", "faiss"]

# faiss's counting k-NN holds 32 queries x (bits + 1) x k ids; above this k, its heap k-NN.
_FAISS_MC_MAX_K = 4096
# Queries per faiss call at least (faiss's counting k-NN works in batches of 32).
_FAISS_PART = 32


def _faiss_available() -> bool:
    """Whether faiss can be imported."""
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
        backend: "numpy" (:func:`hamming_topk`), "faiss" (module docstring) or "auto"
            (faiss when importable).

    Searches may run concurrently, except faiss searches with k on both sides of 4096
    (the switch between faiss's two k-NN modes is a setting of the shared index).
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
        """The k (1 <= k <= ntotal) nearest database codes of each (nq, ceil(bits / 8))
        uint8 query: (nq, k) int32 distances and int64 indices, by distance then index."""
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
        """faiss search, query parts on ``torch.get_num_threads()`` threads with one OpenMP
        thread each (a per-thread setting): on shared cores several times faster than
        faiss's own OpenMP loop, whose threads wait for each other at every block."""
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
