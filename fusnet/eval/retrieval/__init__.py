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

Modules
-------
``retrieval.packing``: :func:`pack_codes`, :func:`unpack_codes` and the checks of
packed arrays. ``retrieval.topk``: :func:`hamming_distance` and
:func:`hamming_topk`, numpy only. ``retrieval.hamming_index``: :class:`HammingIndex`,
the numpy path or a faiss backend (``faiss.IndexBinaryFlat``) for large databases.
Both backends are checked against each other in the tests on codes with many ties.
"""

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
