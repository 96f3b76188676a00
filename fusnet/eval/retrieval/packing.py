"""Packing ``{-1, +1}`` codes into bytes and back, and the checks of packed arrays.

Codes of shape ``(n, bits)`` pack into ``uint8`` rows of ``ceil(bits / 8)`` bytes with
``np.packbits`` (first code dimension = most significant bit of byte 0; the last byte
zero-padded); the search code reads them as 64-bit words (:func:`_to_words`).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def pack_codes(codes: ArrayLike) -> np.ndarray:
    """(n, bits) codes in {-1, +1} (or real values) -> (n, ceil(bits / 8)) uint8: bit = 1
    where code > 0, ``np.packbits`` order, the last byte zero-padded."""
    arr = codes.detach().cpu().numpy() if isinstance(codes, Tensor) else np.asarray(codes)
    if arr.ndim != 2:
        raise ValueError(f"codes must have shape (n, bits), got {arr.shape}")
    return np.packbits(arr > 0, axis=1)


def unpack_codes(packed: np.ndarray, bits: int, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Inverse of :func:`pack_codes`: (n, bits) codes in {-1, +1} of ``dtype``."""
    packed = _check_packed(packed, "packed")
    if packed.shape[1] != (bits + 7) // 8:
        raise ValueError(
            f"{bits}-bit codes pack into {(bits + 7) // 8} bytes, got {packed.shape[1]}"
        )
    ones = np.unpackbits(packed, axis=1, count=bits)  # (n, bits) in {0, 1}
    return (ones.astype(dtype) * 2 - 1).astype(dtype)


def _check_packed(packed: np.ndarray, name: str) -> np.ndarray:
    """``packed`` as a contiguous 2-D uint8 array, or a ValueError naming ``name``."""
    arr = np.asarray(packed)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(
            f"{name} must be a 2-D uint8 array from pack_codes, got {arr.dtype} {arr.shape}"
        )
    return np.ascontiguousarray(arr)


def _check_pair(query_packed: np.ndarray, db_packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Packed queries and database, checked, of the same width in bytes."""
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
