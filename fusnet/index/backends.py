"""Search backends of a gallery: faiss's exact flat index and its inverted-file index.

Both take packed codes (``fusnet.eval.retrieval.pack_codes``) and answer k-NN queries
by Hamming distance; results are sorted by distance, then by id.

* ``flat`` (exact): :class:`fusnet.eval.retrieval.HammingIndex` on faiss's
  ``IndexBinaryFlat``: every code scanned, ties broken by id (insertion order),
  the same hits as everywhere else in fusnet. Nothing to save: it is rebuilt
  from the gallery's ``codes.npy`` on open (a copy).
* ``ivf`` (approximate): faiss's ``IndexBinaryIVF``: k-means (in faiss) splits
  the codes into ``nlist`` lists, a query scans the ``nprobe`` lists whose
  centroids are closest. Saved with ``faiss.write_index_binary``. Which of the
  equal-distance codes it returns depends on the lists scanned; the returned
  hits are sorted by (distance, id). Defaults from the measured recall/speed
  curve in ``benchmarks/README.md`` (:func:`default_nlist`, ``DEFAULT_NPROBE``).
  Saved as ``ivf-<count>.faiss``: the file of the committed count is the one
  ``gallery.json`` names, so a commit killed half-way leaves the old one valid.
* ``milvus``: a Milvus collection (``fusnet.index.milvus_backend``), local or a
  cluster, the same code for both.
"""

from __future__ import annotations

import errno
import logging
import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fusnet.errors import ConfigError, DataError
from fusnet.eval.retrieval import HammingIndex

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("flat", "ivf", "milvus")
DEFAULT_NPROBE = 64
"""Lists scanned per query by the ``ivf`` kind unless told: with 1024 lists, recall@100
0.994-0.997 at 15-23x the exact index's queries/s on 10 and 100 million codes
(benchmarks/README.md)."""
# k-means samples per list when training the ivf index (faiss's default cap is 256).
_TRAIN_PER_LIST = 64


def default_nlist(count: int) -> int:
    """Lists of an ivf index over ``count`` codes: 1024, or the largest power of two <= count / 39.

    At 1 and 10 million 48-bit codes the recall/speed curve depended on the share of
    lists scanned (nprobe / nlist) far more than on nlist, while building costs
    count x nlist distances (4096 lists took 4x as long to build as 1024 for no better
    curve; benchmarks/README.md). faiss's k-means wants at least 39 codes per list.
    """
    return 1 << max(0, min(10, int(math.log2(max(1, count // 39)))))


def pad_to_words(packed: np.ndarray) -> np.ndarray:
    """Zero-pad rows to a multiple of 8 bytes (faiss's fast 64-bit kernels; distances unchanged)."""
    nbytes = packed.shape[1]
    width = -(-nbytes // 8) * 8
    if width == nbytes:
        return np.ascontiguousarray(packed)
    out = np.zeros((len(packed), width), np.uint8)
    out[:, :nbytes] = packed
    return out


def sort_hits(distances: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by (distance, id); missing hits (id -1) last."""
    big = np.iinfo(np.int64).max
    key_d = np.where(ids < 0, big, distances.astype(np.int64))
    key_i = np.where(ids < 0, big, ids)
    order = np.lexsort((key_i, key_d), axis=1)  # (nq, k): by distance, then id
    return np.take_along_axis(distances, order, 1), np.take_along_axis(ids, order, 1)


class Backend(Protocol):
    """What a gallery needs from a search backend."""

    kind: str

    @property
    def ntotal(self) -> int: ...

    def add(self, packed: np.ndarray) -> None: ...

    def search(self, packed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def save(self, directory: Path) -> None: ...

    def describe(self) -> dict[str, Any]: ...


class FlatBackend:
    """Exact search: every code scanned, ties by id (``HammingIndex`` on faiss)."""

    kind = "flat"

    def __init__(self, bits: int) -> None:
        self.index = HammingIndex(bits, backend="faiss")

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def add(self, packed: np.ndarray) -> None:
        self.index.add(packed)

    def search(self, packed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(packed, min(k, self.ntotal))

    def save(self, directory: Path) -> None:
        """Nothing to write: the flat index is the gallery's codes.npy."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}


class IVFBackend:
    """Approximate search: faiss ``IndexBinaryIVF`` (k-means lists, ``nprobe`` scanned).

    Args:
        bits: code length.
        nlist: number of lists (None: :func:`default_nlist` of the first codes added).
        nprobe: lists scanned per query.
    """

    kind = "ivf"

    def __init__(self, bits: int, nlist: int | None = None, nprobe: int = DEFAULT_NPROBE) -> None:
        if nlist is not None and nlist < 1:
            raise ConfigError(f"nlist must be >= 1, got {nlist}")
        if nprobe < 1:
            raise ConfigError(f"nprobe must be >= 1, got {nprobe}")
        self.bits = bits
        self.nbytes = (bits + 7) // 8
        self.nlist = nlist
        self.nprobe = nprobe
        self.index: Any = None  # faiss.IndexBinaryIVF once trained

    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def add(self, packed: np.ndarray) -> None:
        """Add codes; the first call trains the lists on them (a sample of them)."""
        import faiss

        padded = pad_to_words(packed)  # (n, 8 * words)
        if self.index is None:
            nlist = self.nlist or default_nlist(len(padded))
            if len(padded) < nlist:
                raise DataError(
                    f"an ivf index with {nlist} lists needs at least {nlist} codes to train on, "
                    f"got {len(padded)}: use --kind flat (exact) or a smaller --nlist"
                )
            d = padded.shape[1] * 8
            quantizer = faiss.IndexBinaryFlat(d)
            index = faiss.IndexBinaryIVF(quantizer, d, nlist)
            index.own_fields = True
            quantizer.this.disown()  # the index owns (and frees) its quantizer
            rng = np.random.default_rng(0)
            take = min(len(padded), nlist * _TRAIN_PER_LIST)
            sample = padded[np.sort(rng.choice(len(padded), take, replace=False))] if take < len(padded) else padded
            index.train(sample)
            self.index, self.nlist = index, nlist
        self.index.add(padded)

    def search(self, packed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.index.nprobe = min(self.nprobe, self.nlist or 1)
        distances, ids = self.index.search(pad_to_words(packed), min(k, self.ntotal))
        return sort_hits(distances.astype(np.int32), ids.astype(np.int64))

    def file_name(self) -> str:
        """``ivf-<ntotal>.faiss``."""
        return f"ivf-{self.ntotal}.faiss"

    def save(self, directory: Path) -> None:
        import faiss

        tmp = directory / f".{self.file_name()}.tmp"
        faiss.write_index_binary(self.index, str(tmp))
        tmp.replace(directory / self.file_name())

    @classmethod
    def load(cls, path: Path, bits: int, nprobe: int) -> IVFBackend:
        import faiss

        if not path.is_file():  # a writer removed it after publishing a newer one, or it is lost
            raise FileNotFoundError(errno.ENOENT, "no such ivf index file", str(path))
        backend = cls(bits, nprobe=nprobe)
        backend.index = faiss.read_index_binary(str(path))
        backend.nlist = int(backend.index.nlist)
        return backend

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "nlist": self.nlist, "nprobe": self.nprobe,
                "file": self.file_name() if self.index is not None else None}


def make_backend(spec: dict[str, Any], bits: int) -> Backend:
    """A new, empty faiss backend from an index spec (``gallery.json``'s ``index``).

    ``fusnet.index.gallery.open_backend`` opens a gallery's backend, Milvus included.
    """
    kind = spec.get("kind")
    if kind == "flat":
        return FlatBackend(bits)
    if kind == "ivf":
        return IVFBackend(bits, spec.get("nlist"), spec.get("nprobe") or DEFAULT_NPROBE)
    raise ConfigError(f"unknown index kind {kind!r}; choose from {', '.join(KINDS)}")
