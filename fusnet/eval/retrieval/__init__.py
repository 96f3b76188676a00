"""Packed binary codes, Hamming distances and exact Hamming top-k search.

Codes are ``{-1, +1}`` (bit = 1 where code > 0) arrays of shape ``(n, bits)``, packed into
bytes by :mod:`~fusnet.eval.retrieval.packing`. Top-k results are sorted by Hamming
distance with ties broken by database index: unique and deterministic, whatever the
backend, chunk size or thread count. :mod:`~fusnet.eval.retrieval.topk` searches with
numpy; :class:`~fusnet.eval.retrieval.hamming_index.HammingIndex` with numpy or faiss
(``IndexBinaryFlat``, for large databases); the tests check the two against each other."""

from fusnet.eval.retrieval.hamming_index import Backend, HammingIndex, _faiss_available
from fusnet.eval.retrieval.packing import ArrayLike, _to_words, pack_codes, unpack_codes
from fusnet.eval.retrieval.topk import hamming_distance, hamming_topk

__all__ = [
    "ArrayLike",
    "Backend",
    "HammingIndex",
    "_faiss_available",
    "_to_words",
    "hamming_distance",
    "hamming_topk",
    "pack_codes",
    "unpack_codes",
]
