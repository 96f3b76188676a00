"""Retrieval metrics for binary codes: mAP (two tie conventions), precision/recall.

Ranking and relevance
---------------------
A query ranks the whole database by Hamming distance. Codes are ``{-1, +1}``
arrays (torch tensors or numpy arrays) of shape ``(n, bits)``. Labels are either
class ids ``(n,)`` (relevant = same class) or multi-hot ``(n, C)`` (relevant =
shares at least one label). One-hot label matrices are recognised and treated
as class ids.

Hamming distances take few values (``0..bits``), so ties are common, at 12 bits
massively so. Two conventions are offered and every function says which one a
number uses:

``ties="index"``
    Tied items are ordered by database index (a stable sort by distance). The
    figure is deterministic. The public deep-hashing code (DPSH, ADSH, SEMICON:
    ``np.argsort`` per query) breaks ties by whatever its unstable sort does.
``ties="average"``
    The expectation over all orders of the tied items, each order equally
    likely (McSherry & Najork, "Computing information retrieval performance
    measures efficiently in the presence of tied scores", ECIR 2008). Exact,
    closed form, computed from per-distance counts only (see
    :func:`_expected_block_sum`).

Average precision
-----------------
With relevant items at (1-based) positions ``p_1 < p_2 < ...`` of the ranking,
``AP = (1/R) * sum_m m / p_m`` over the relevant items, ``R`` their number. For
mAP@k (``topk=k``) only positions ``<= k`` count and ``R`` is the number of
relevant items *retrieved within the top k*: the convention of the public
deep-hashing code (``CalcTopMap``). A query with no relevant item (in the
database, or within the top k for mAP@k) has AP 0 and still counts in the mean;
queries with no relevant item in the whole database are logged as a warning
and counted in :func:`evaluate_retrieval`'s record.

Under ``ties="average"`` with ``topk`` the normaliser (relevant items in the top
k) is itself random when a tie block straddles position k; the expectation of
the ratio is computed exactly, by conditioning on the number of relevant items
the straddling block places above the cut (a hypergeometric variable).

Computation
-----------
Exact, bounded in memory (queries in chunks, the database in tiles) and
sort-free for class labels. Distances come from a matrix product of ``+-1``
codes, ``dist = (bits - q . d) / 2``, exact in floating point. For a query of
class c with R database items, cut the database at those items into R + 1
segments (segment(i) = items of class c strictly before i) and give item i the
cell ``dist * (R + 1) + segment(i)``; the same matrix product computes it (the
segment rides in extra code columns). One ``scatter_add`` counts the cells per
query (all items and relevant items packed in one int64 counter) and a
cumulative sum over the cells then holds, at each relevant item's cell, its
position in the ranking with ties broken by index and its rank among the
relevant items: AP follows without sorting anything, and the per-distance
counts give the tie-aware figure. Multi-hot labels (and classes so large that
their cells would outnumber the database severalfold) use a stable radix sort of
the distances per query instead. Chunks run on ``torch.get_num_threads()``
worker threads, each with single-threaded torch kernels (coarse-grained
parallelism suffers far less than per-kernel threading when cores are shared);
the torch thread setting is restored afterwards.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import numpy as np
import torch
from scipy.special import digamma, gammaln
from torch import Tensor

logger = logging.getLogger(__name__)

ArrayLike = Tensor | np.ndarray
Ties = Literal["index", "average"]

_TIES = ("index", "average")
# Bound on the histogram cells (queries x cells) one chunk may hold.
_CHUNK_ELEMENTS = 1 << 22
# Queries per chunk (defaults), and database items per tile of the histogram path
# (tiles of _TILE_ELEMENTS keep the matrix-product output and its integer copy in L2).
_HIST_CHUNK = 256
_SORT_CHUNK = 64
_SORT_ELEMENTS = 1 << 21  # queries x database per chunk of the sort path (~40 bytes each)
_TILE = 2048
_TILE_ELEMENTS = _HIST_CHUNK * _TILE
_MAX_CLASSES_PER_CHUNK = 16
# Packed histogram counters: relevant items << 32 | all items.
_REL_SHIFT = 32
_REL_INC = 1 << _REL_SHIFT
_LOW_MASK = _REL_INC - 1
_HUGE = np.iinfo(np.int64).max
_EMPTY = torch.zeros(0, dtype=torch.int64)
_LOCAL = threading.local()  # per-thread scratch buffers
# Histogram cells per chunk of the tie-aware closed form (cache-sized temporaries).
_TIE_ROWS_CELLS = 1 << 16
# The histogram path is used while (R + 1) * (bits + 1) <= _HIST_FACTOR * N.
_HIST_FACTOR = 4
# float32 represents every multiple of 0.5 below 2**23 exactly (margin kept).
_FLOAT32_EXACT = 1 << 22


@dataclass
class _Stats:
    """Per-query raw statistics, from which every metric here is computed.

    Attributes:
        num_database: database size N.
        bits: code length.
        topk: the rank cut-off K used for ``ap_index`` (N for the full ranking).
        ks: the cut-offs of ``rel_at_k``.
        num_relevant: (nq,) relevant items in the whole database.
        hist_all: (nq, bits + 1) int32 database items at each Hamming distance.
        hist_rel: (nq, bits + 1) int32 relevant items at each Hamming distance.
        ap_index: (nq,) AP (or AP@K) with ties broken by database index.
        rel_at_k: (nq, len(ks)) relevant items within the first k, index ties.
    """

    num_database: int
    bits: int
    topk: int
    ks: tuple[int, ...]
    num_relevant: np.ndarray
    hist_all: np.ndarray
    hist_rel: np.ndarray
    ap_index: np.ndarray
    rel_at_k: np.ndarray


@dataclass(frozen=True)
class RadiusCurve:
    """Precision and recall of Hamming-ball lookups, for radius 0..bits.

    Attributes:
        radius: (bits + 1,) the radii 0..bits.
        precision: (bits + 1,) mean over queries of relevant / retrieved within
            the radius; a query that retrieves nothing has precision 0 (the usual
            "precision within Hamming radius r" convention of hashing papers).
        recall: (bits + 1,) mean over queries of relevant within the radius /
            all relevant; a query with no relevant item has recall 0.
        fraction_empty: (bits + 1,) fraction of queries retrieving nothing.
    """

    radius: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    fraction_empty: np.ndarray


# --- public API ------------------------------------------------------------------------------


def mean_average_precision(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    topk: int | None = None,
    ties: Ties = "index",
    chunk_size: int | None = None,
) -> float:
    """Mean average precision of Hamming ranking (mAP, or mAP@topk).

    Args:
        query_codes: (nq, bits) codes in {-1, +1}.
        db_codes: (N, bits) codes in {-1, +1}.
        query_labels: (nq,) class ids or (nq, C) multi-hot labels.
        db_labels: (N,) class ids or (N, C) multi-hot labels, same kind as the queries'.
        topk: rank cut-off k for mAP@k (AP normalised by the relevant items
            retrieved within the top k); None ranks the whole database.
        ties: "index" (ties broken by database index, deterministic) or
            "average" (expected AP over all orders of tied items).
        chunk_size: queries per chunk; None picks one from a memory budget.

    Returns:
        The mean over all queries; queries without a relevant item count as 0.
    """
    _check_ties(ties)
    stats = _retrieval_stats(
        query_codes, db_codes, query_labels, db_labels, topk=topk, chunk_size=chunk_size
    )
    _warn_no_relevant(stats)
    ap = stats.ap_index if ties == "index" else _tie_aware_ap(stats)
    return float(ap.mean()) if len(ap) else 0.0


def precision_at_k(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    k: int,
    ties: Ties = "index",
    chunk_size: int | None = None,
) -> float:
    """Mean precision@k: relevant items among the first k, divided by k.

    k larger than the database is capped at the database size. Under
    ``ties="average"`` the count of relevant items is its expectation.

    Args:
        query_codes: (nq, bits) codes in {-1, +1}.
        db_codes: (N, bits) codes in {-1, +1}.
        query_labels: (nq,) class ids or (nq, C) multi-hot labels.
        db_labels: (N,) or (N, C) labels.
        k: the cut-off (>= 1).
        ties: "index" or "average" (see the module docstring).
        chunk_size: queries per chunk; None picks one from a memory budget.

    Returns:
        The mean over all queries.
    """
    _check_ties(ties)
    stats = _retrieval_stats(
        query_codes, db_codes, query_labels, db_labels, ks=(k,), chunk_size=chunk_size
    )
    kk = min(k, stats.num_database)
    rel = stats.rel_at_k[:, 0] if ties == "index" else _expected_rel_at_k(stats, kk)
    return float((rel / kk).mean()) if len(rel) else 0.0


def recall_at_k(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    k: int,
    ties: Ties = "index",
    chunk_size: int | None = None,
) -> float:
    """Mean recall@k: relevant items among the first k over all relevant items.

    Queries without a relevant item count as 0.

    Args:
        query_codes: (nq, bits) codes in {-1, +1}.
        db_codes: (N, bits) codes in {-1, +1}.
        query_labels: (nq,) class ids or (nq, C) multi-hot labels.
        db_labels: (N,) or (N, C) labels.
        k: the cut-off (>= 1).
        ties: "index" or "average" (see the module docstring).
        chunk_size: queries per chunk; None picks one from a memory budget.

    Returns:
        The mean over all queries.
    """
    _check_ties(ties)
    stats = _retrieval_stats(
        query_codes, db_codes, query_labels, db_labels, ks=(k,), chunk_size=chunk_size
    )
    kk = min(k, stats.num_database)
    rel = stats.rel_at_k[:, 0] if ties == "index" else _expected_rel_at_k(stats, kk)
    return float(_safe_div(rel, stats.num_relevant).mean()) if len(rel) else 0.0


def precision_recall_by_radius(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    chunk_size: int | None = None,
) -> RadiusCurve:
    """Precision and recall of Hamming-ball lookups for every radius 0..bits.

    Independent of tie order (a ball holds whole tie blocks).

    Args:
        query_codes: (nq, bits) codes in {-1, +1}.
        db_codes: (N, bits) codes in {-1, +1}.
        query_labels: (nq,) class ids or (nq, C) multi-hot labels.
        db_labels: (N,) or (N, C) labels.
        chunk_size: queries per chunk; None picks one from a memory budget.

    Returns:
        A :class:`RadiusCurve` (means over all queries).
    """
    stats = _retrieval_stats(query_codes, db_codes, query_labels, db_labels, chunk_size=chunk_size)
    retrieved = np.cumsum(stats.hist_all, axis=1)  # (nq, bits+1)
    relevant = np.cumsum(stats.hist_rel, axis=1)  # (nq, bits+1)
    precision = _safe_div(relevant, retrieved)
    recall = _safe_div(relevant, stats.num_relevant[:, None])
    nq = max(len(retrieved), 1)
    return RadiusCurve(
        radius=np.arange(stats.bits + 1),
        precision=precision.sum(0) / nq,
        recall=recall.sum(0) / nq,
        fraction_empty=(retrieved == 0).sum(0) / nq,
    )


def evaluate_retrieval(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    ks: Sequence[int] = (10, 100),
    topk: int | None = None,
    chunk_size: int | None = None,
    per_query: bool = False,
) -> dict[str, object]:
    """Every retrieval figure from one pass, as a JSON-ready record.

    Args:
        query_codes: (nq, bits) codes in {-1, +1}.
        db_codes: (N, bits) codes in {-1, +1}.
        query_labels: (nq,) class ids or (nq, C) multi-hot labels.
        db_labels: (N,) or (N, C) labels.
        ks: cut-offs for precision@k and recall@k (ties by index).
        topk: cut-off of the mAP figures (None: whole ranking).
        chunk_size: queries per chunk; None picks one from a memory budget.
        per_query: also return the per-query AP lists (``ap``, ``ap_tie_aware``),
            e.g. for paired tests.

    Returns:
        ``map`` (ties by index), ``map_tie_aware`` (expected AP over tie orders),
        ``topk`` (None = whole ranking), ``bits``, ``num_queries``,
        ``num_database``, ``num_queries_without_relevant`` (none in the whole
        database; their AP counts as 0), ``precision@k`` and ``recall@k`` for
        each k (ties by index; k capped at the database size), ``ties`` (a note
        naming the conventions).
    """
    ks = tuple(int(k) for k in ks)
    stats = _retrieval_stats(
        query_codes, db_codes, query_labels, db_labels, topk=topk, ks=ks, chunk_size=chunk_size
    )
    missing = _warn_no_relevant(stats)
    ap_tie = _tie_aware_ap(stats)
    nq = len(stats.ap_index)
    record: dict[str, object] = {
        "map": float(stats.ap_index.mean()) if nq else 0.0,
        "map_tie_aware": float(ap_tie.mean()) if nq else 0.0,
        "topk": topk,
        "bits": stats.bits,
        "num_queries": nq,
        "num_database": stats.num_database,
        "num_queries_without_relevant": missing,
        "ties": "map, precision@k, recall@k: Hamming ties broken by database index; "
        "map_tie_aware: expected AP over all orders of tied items (McSherry & Najork 2008)",
    }
    for j, k in enumerate(ks):
        kk = min(k, stats.num_database)
        rel = stats.rel_at_k[:, j]
        record[f"precision@{k}"] = float((rel / kk).mean()) if nq else 0.0
        record[f"recall@{k}"] = float(_safe_div(rel, stats.num_relevant).mean()) if nq else 0.0
    if per_query:
        record["ap"] = stats.ap_index.tolist()
        record["ap_tie_aware"] = ap_tie.tolist()
    return record


# --- input handling --------------------------------------------------------------------------


def _check_ties(ties: str) -> None:
    if ties not in _TIES:
        raise ValueError(f"ties must be one of {_TIES}, got {ties!r}")


def _as_codes(codes: ArrayLike, name: str) -> Tensor:
    """(n, bits) float32 tensor of +-1 codes, validated."""
    t = torch.as_tensor(np.asarray(codes) if not isinstance(codes, Tensor) else codes)
    t = t.detach().cpu()
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (n, bits), got {tuple(t.shape)}")
    t = t.to(torch.float32)
    if t.numel() and not bool(((t == 1) | (t == -1)).all()):
        raise ValueError(
            f"{name} must hold only -1 and +1 (binarise with torch.where(u >= 0, 1.0, -1.0))"
        )
    return t.contiguous()


def _as_labels(labels: ArrayLike, n: int, name: str) -> Tensor:
    t = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels)
    t = t.detach().cpu()
    if t.ndim not in (1, 2) or t.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) or ({n}, C), got {tuple(t.shape)}")
    if t.ndim == 1 and (t.is_floating_point() or t.is_complex()):
        if not bool((t == t.round()).all()):
            raise ValueError(f"{name}: class ids must be integers")
    return t


def _prepare_labels(
    query_labels: ArrayLike, db_labels: ArrayLike, nq: int, n: int
) -> tuple[str, Tensor, Tensor]:
    """("class", (nq,), (N,)) int64 class ids, or ("multi", (nq, C), (N, C)) float32."""
    ql = _as_labels(query_labels, nq, "query_labels")
    dl = _as_labels(db_labels, n, "db_labels")
    if ql.ndim != dl.ndim:
        raise ValueError(
            "query_labels and db_labels must be of the same kind (both class ids or both "
            f"multi-hot), got shapes {tuple(ql.shape)} and {tuple(dl.shape)}"
        )
    if ql.ndim == 2:
        if ql.shape[1] != dl.shape[1]:
            raise ValueError(
                f"multi-hot label widths differ: {ql.shape[1]} (queries) vs {dl.shape[1]} (database)"
            )
        qm, dm = (ql != 0), (dl != 0)
        if bool((qm.sum(1) == 1).all()) and bool((dm.sum(1) == 1).all()):
            return "class", qm.to(torch.int8).argmax(1), dm.to(torch.int8).argmax(1)
        return "multi", qm.to(torch.float32), dm.to(torch.float32)
    return "class", ql.to(torch.int64), dl.to(torch.int64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.broadcast_to(np.asarray(den, dtype=np.float64), num.shape)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _warn_no_relevant(stats: _Stats) -> int:
    missing = int((stats.num_relevant == 0).sum())
    if missing:
        logger.warning(
            "%d of %d queries have no relevant database item; their AP counts as 0",
            missing, len(stats.num_relevant),
        )
    return missing


# --- the engine ------------------------------------------------------------------------------


def _retrieval_stats(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    topk: int | None = None,
    ks: Sequence[int] = (),
    chunk_size: int | None = None,
    method: Literal["auto", "histogram", "sort"] = "auto",
) -> _Stats:
    """Per-query histograms, index-tie AP and relevant counts within each k.

    ``method`` selects the index-tie algorithm (both are exact; "auto" picks the
    histogram path for class labels unless a class's histogram would be larger
    than ``_HIST_FACTOR`` times the database, and the sort path otherwise).
    Chunks run on ``torch.get_num_threads()`` worker threads, each with
    single-threaded torch kernels (coarse-grained parallelism degrades far less
    than per-kernel threading when the cores are shared).
    """
    q = _as_codes(query_codes, "query_codes")
    d = _as_codes(db_codes, "db_codes")
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"code lengths differ: {q.shape[1]} (queries) vs {d.shape[1]} (database)")
    nq, bits = q.shape
    n = d.shape[0]
    if n == 0:
        raise ValueError("the database is empty")
    if n >= 1 << 31:
        raise ValueError(f"database of {n} items: at most 2**31 - 1 are supported")
    if topk is not None and topk < 1:
        raise ValueError(f"topk must be >= 1 or None, got {topk}")
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {tuple(ks)}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    if method not in ("auto", "histogram", "sort"):
        raise ValueError(f"unknown method {method!r}")
    kind, ql, dl = _prepare_labels(query_labels, db_labels, nq, n)
    ks = tuple(int(k) for k in ks)
    out = _Stats(
        num_database=n,
        bits=bits,
        topk=n if topk is None else min(topk, n),
        ks=ks,
        num_relevant=np.zeros(nq, np.int64),
        hist_all=np.zeros((nq, bits + 1), np.int32),  # counts < 2**31 (database size)
        hist_rel=np.zeros((nq, bits + 1), np.int32),
        ap_index=np.zeros(nq, np.float64),
        rel_at_k=np.zeros((nq, len(ks)), np.int64),
    )
    if nq == 0:
        return out
    ctx = _Context(q=q, d=d, out=out, ks=torch.tensor([min(k, n) for k in ks], dtype=torch.int64))
    tasks: list[Callable[[], None]] = []
    if kind == "multi":
        step = chunk_size or max(1, min(_SORT_CHUNK, _SORT_ELEMENTS // n))
        for s in range(0, nq, step):
            rows = torch.arange(s, min(s + step, nq))
            tasks.append(partial(_sort_task, ctx, rows, partial(_multi_relevance, ql[rows], dl)))
    else:
        ctx.db_labels = dl
        db_order = torch.argsort(dl, stable=True)  # database items grouped by class, by index
        db_classes, db_counts = torch.unique_consecutive(dl[db_order], return_counts=True)
        ctx.class_members = dict(
            zip(db_classes.tolist(), torch.split(db_order, db_counts.tolist()), strict=True)
        )
        num_rel = dict(zip(db_classes.tolist(), db_counts.tolist(), strict=True))
        order = torch.argsort(ql, stable=True)  # queries grouped by class
        classes, counts = torch.unique_consecutive(ql[order], return_counts=True)
        groups: list[tuple[Tensor, int]] = []
        start = 0
        for c, count in zip(classes.tolist(), counts.tolist(), strict=True):
            group = order[start : start + count]
            start += count
            cells = (num_rel.get(c, 0) + 1) * (bits + 1)
            if method == "histogram" or (method == "auto" and cells <= _HIST_FACTOR * n):
                groups.append((group, cells))
            else:
                step = chunk_size or max(1, min(_SORT_CHUNK, _SORT_ELEMENTS // n))
                for s in range(0, count, step):
                    rows = group[s : s + step]
                    rel = partial(_class_relevance, ql[rows], dl)
                    tasks.append(partial(_sort_task, ctx, rows, rel))
        for rows in _pack_chunks(groups, chunk_size):
            tasks.append(partial(_histogram_task, ctx, rows, ql[rows]))
    _run_tasks(tasks)
    return out


@dataclass
class _Context:
    """What every chunk task shares (read-only, except disjoint rows of ``out``)."""

    q: Tensor  # (nq, bits)
    d: Tensor  # (N, bits)
    out: _Stats
    ks: Tensor  # (len(ks),) cut-offs capped at N
    db_labels: Tensor | None = None  # (N,) class ids (class labels only)
    class_members: dict[int, Tensor] = field(default_factory=dict)  # class -> (R,) items


def _class_relevance(q_labels: Tensor, db_labels: Tensor) -> np.ndarray:
    return (q_labels[:, None] == db_labels[None, :]).numpy()  # (Qc, N)


def _multi_relevance(q_labels: Tensor, db_labels: Tensor) -> np.ndarray:
    return (q_labels @ db_labels.T).gt(0).numpy()  # (Qc, N) shares a label


def _run_tasks(tasks: list[Callable[[], None]]) -> None:
    """Run chunk tasks on torch.get_num_threads() threads, torch kernels single-threaded."""
    workers = min(torch.get_num_threads(), len(tasks))
    if workers <= 1:
        try:
            for task in tasks:
                task()
        finally:
            _LOCAL.__dict__.pop("pool", None)
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(task) for task in tasks]:
                future.result()
    finally:
        torch.set_num_threads(previous)


def _scratch(key: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A reusable per-thread buffer (fresh large allocations page-fault on every chunk)."""
    pool = _LOCAL.__dict__.setdefault("pool", {})
    numel = math.prod(shape)
    buf = pool.get((key, dtype))
    if buf is None or buf.numel() < numel:
        buf = torch.empty(numel, dtype=dtype)
        pool[(key, dtype)] = buf
    return buf[:numel].view(shape)


def _pack_chunks(groups: list[tuple[Tensor, int]], chunk_size: int | None) -> list[Tensor]:
    """Pack class groups of queries into chunks (several small classes share one).

    Args:
        groups: (query rows of one class, histogram cells of that class), by class.
        chunk_size: queries per chunk, or None (up to ``_HIST_CHUNK``, fewer for
            classes with large histograms).

    Returns:
        Query rows per chunk, grouped by class inside a chunk, at most
        ``_MAX_CLASSES_PER_CHUNK`` classes each.
    """
    chunks: list[Tensor] = []
    parts: list[Tensor] = []
    size, cells_max = 0, 0
    for group, cells in groups:
        s = 0
        while s < len(group):
            widest = max(cells_max, cells)
            cap = chunk_size or max(1, min(_HIST_CHUNK, _CHUNK_ELEMENTS // widest))
            if parts and (size >= cap or len(parts) >= _MAX_CLASSES_PER_CHUNK):
                chunks.append(torch.cat(parts))
                parts, size, cells_max = [], 0, 0
                continue
            take = min(len(group) - s, cap - size)
            parts.append(group[s : s + take])
            size += take
            cells_max = widest
            s += take
    if parts:
        chunks.append(torch.cat(parts))
    return chunks


def _histogram_task(ctx: _Context, rows: Tensor, labels: Tensor) -> None:
    """Index-tie statistics for a chunk of class-labelled queries, without sorting.

    For a class with R database items, cut the database into segments at its
    items: segment(i) = the class's items strictly before i, so the k-th one
    (0-based) opens segment k. For a query of that class, the cell of item i is
    ``dist * (R + 1) + segment(i)``; the matrix product computes it exactly (the
    segment rides in an extra code column selected by a one-hot class column of
    the query). A scatter-add counts cells per query (all items in the low 32
    bits, relevant items in the high bits) and a cumulative sum over the
    flattened cells gives, at the k-th relevant item's cell, the items and the
    relevant items ordered at or before it with ties broken by index: its
    position and its rank among the relevant items.

    Args:
        ctx: shared codes, database labels and outputs.
        rows: (Qc,) query indices, grouped by class.
        labels: (Qc,) their class ids.
    """
    d, db_labels = ctx.d, ctx.db_labels
    n, bits = d.shape
    b1, qc = bits + 1, len(rows)
    classes, slot = torch.unique_consecutive(labels, return_inverse=True)  # (Cc,), (Qc,)
    nc = len(classes)
    rel_idx = [ctx.class_members.get(c, _EMPTY) for c in classes.tolist()]  # (R_j,) each
    num_rel = torch.tensor([len(r) for r in rel_idx], dtype=torch.int64)  # (Cc,)
    r1 = num_rel + 1
    cells = int((r1 * b1).max())
    dtype = torch.float32 if cells * 2 < _FLOAT32_EXACT else torch.float64
    q = ctx.q[rows].to(dtype)  # (Qc, bits)
    qa = torch.zeros(qc, bits + nc, dtype=dtype)  # (Qc, bits + Cc): codes, one-hot class
    qa[:, :bits] = q * (-0.5 * r1[slot]).to(dtype)[:, None]
    qa[torch.arange(qc), bits + slot] = 1.0

    # cells of the relevant items (k-th item of the class: segment k), padding -> dummy cell
    r_max = int(num_rel.max())
    members = torch.cat(rel_idx)  # (sum R,) every chunk class's items, class by class
    dist_all = ((bits - q @ d[members].to(dtype).T) * 0.5).to(torch.int64)  # (Qc, sum R)
    k = torch.arange(r_max)  # (Rmax,)
    valid = k[None, :] < num_rel[slot][:, None]  # (Qc, Rmax)
    start = (torch.cumsum(num_rel, 0) - num_rel)[slot]  # (Qc,) the row's class block
    cols = (start[:, None] + k[None, :]).clamp_(max=max(len(members) - 1, 0))  # (Qc, Rmax)
    dist_rel = dist_all.gather(1, cols) if len(members) else cols  # (Qc, Rmax)
    g = torch.where(valid, dist_rel * r1[slot][:, None] + k[None, :], cells)  # (Qc, Rmax)

    counts = _scratch("counts", (qc, cells + 1), torch.int64).zero_()  # (relevant << 32) | all
    tile = min(n, max(_TILE, _TILE_ELEMENTS // qc))
    aug = _scratch("aug", (tile, bits + nc), dtype)  # database tile: codes, segment columns
    buf = _scratch("buf", (qc, tile), dtype)
    idx = _scratch("idx", (qc, tile), torch.int64)
    ones = torch.ones(tile, dtype=torch.int64).expand(qc, tile)  # (1,1)-expanded is 2x slower
    member = db_labels[:, None] == classes[None, :]  # (N, Cc)
    seg = torch.cumsum(member, 0, dtype=torch.int32).sub_(member.to(torch.int32))  # (N, Cc)
    seg_col = seg.to(dtype).add_((bits / 2 * r1).to(dtype))  # (N, Cc) the segment columns
    for s in range(0, n, tile):
        w = min(tile, n - s)
        aug[:w, :bits] = d[s : s + w]
        aug[:w, bits:] = seg_col[s : s + w]
        f = torch.mm(qa, aug[:w].T, out=buf[:, :w])  # (Qc, w) = dist * (R+1) + segment
        cell = idx[:, :w]
        cell.copy_(f)  # exact
        counts.scatter_add_(1, cell, ones[:, :w])
    counts.scatter_add_(1, g, torch.full((1, 1), _REL_INC, dtype=torch.int64).expand(qc, r_max))
    counts.cumsum_(1)  # the dummy last column only receives, nothing reads it

    ends = torch.arange(b1)[None, :] * r1[slot][:, None] + num_rel[slot][:, None]  # (Qc, bits+1)
    ends = counts.gather(1, ends)  # packed totals through each distance
    zero = torch.zeros(qc, 1, dtype=torch.int64)
    out = ctx.out
    sub = rows.numpy()
    out.hist_all[sub] = torch.diff(ends & _LOW_MASK, dim=1, prepend=zero).numpy()
    out.hist_rel[sub] = torch.diff(ends >> _REL_SHIFT, dim=1, prepend=zero).numpy()
    out.num_relevant[sub] = num_rel[slot].numpy()
    if r_max == 0:
        return
    packed = counts.gather(1, g)  # (Qc, Rmax)
    pos = torch.where(g < cells, packed & _LOW_MASK, _HUGE)
    _fill_index_ap(pos, packed >> _REL_SHIFT, ctx, sub)


def _sort_task(ctx: _Context, rows: Tensor, relevance: Callable[[], np.ndarray]) -> None:
    """Index-tie statistics by a stable sort of each query's distances (any labels).

    Args:
        ctx: shared codes and outputs.
        rows: (Qc,) the queries to process.
        relevance: returns the (Qc, N) bool relevance matrix of these queries.
    """
    bits = ctx.d.shape[1]
    b1 = bits + 1
    qc = len(rows)
    out = ctx.out
    ip = torch.mm(ctx.q[rows], ctx.d.T)  # (Qc, N)
    dist = ((bits - ip) * 0.5).numpy().astype(np.uint8 if bits < 256 else np.int16)  # exact
    rel = relevance()  # (Qc, N) bool
    cell = dist + (np.arange(qc, dtype=np.int64) * b1)[:, None]  # (Qc, N)
    sub = rows.numpy()
    out.hist_all[sub] = np.bincount(cell.ravel(), minlength=qc * b1).reshape(qc, b1)
    out.hist_rel[sub] = np.bincount(cell[rel], minlength=qc * b1).reshape(qc, b1)
    out.num_relevant[sub] = rel.sum(1)
    # only the first `depth` ranks matter: the AP cut-off and the largest k
    depth = max([out.topk, *ctx.ks.tolist()])
    perm = np.argsort(dist, axis=1, kind="stable")[:, :depth]  # radix sort, ties by index
    rel_sorted = np.take_along_axis(rel, perm, axis=1)  # (Qc, depth)
    hits = np.cumsum(rel_sorted, axis=1, dtype=np.int64)  # (Qc, depth) relevant so far
    big_k = out.topk
    prec = np.where(rel_sorted[:, :big_k], hits[:, :big_k] / np.arange(1, big_k + 1), 0.0)
    num_within = hits[:, big_k - 1]  # (Qc,)
    out.ap_index[sub] = _safe_div(prec.sum(1), num_within)
    for j, k in enumerate(ctx.ks.tolist()):
        out.rel_at_k[sub, j] = hits[:, k - 1]


def _fill_index_ap(pos: Tensor, rel_rank: Tensor, ctx: _Context, sub: np.ndarray) -> None:
    """AP@K and relevant counts from the relevant items' positions (histogram path).

    Args:
        pos: (Qc, R) 1-based positions of the relevant items in the ranking, any
            order; padding entries hold a value larger than the database.
        rel_rank: (Qc, R) the items' 1-based ranks among the relevant items.
        ctx: shared outputs (``out.topk`` is the cut-off K).
        sub: (Qc,) query rows to fill.
    """
    within = pos <= ctx.out.topk  # (Qc, R)
    num_within = within.sum(1)  # (Qc,)
    prec = torch.where(within, rel_rank.to(torch.float64) / pos.to(torch.float64), 0.0)
    ap = torch.where(num_within > 0, prec.sum(1) / num_within.clamp(min=1), 0.0)
    ctx.out.ap_index[sub] = ap.numpy()
    for j, k in enumerate(ctx.ks.tolist()):
        ctx.out.rel_at_k[sub, j] = (pos <= k).sum(1).numpy()


# --- tie-aware (expected) figures ------------------------------------------------------------


def _harmonic_table(n: int) -> np.ndarray:
    """H(i) = sum_{j=1..i} 1/j for i = 0..n (float64, via digamma: no accumulated error)."""
    return digamma(np.arange(n + 1, dtype=np.float64) + 1.0) + np.euler_gamma  # (n+1,)


def _expected_block_sum(
    r0: np.ndarray, n0: np.ndarray, n: np.ndarray, r: np.ndarray, harmonic: np.ndarray
) -> np.ndarray:
    """Expected sum of precisions at the relevant items of a randomly ordered tie block.

    A block of ``n`` tied items, ``r`` of them relevant, follows ``n0`` items of
    which ``r0`` are relevant; its order is a uniform random permutation. The
    relevant item at block position t (1..n) has precision
    ``(r0 + 1 + X_t) / (n0 + t)`` with ``X_t`` the relevant items among the t - 1
    block positions before it. ``P(position t relevant) = r / n`` and, given
    that, ``X_t`` is hypergeometric (t - 1 draws from n - 1 items, r - 1 of them
    relevant) with mean ``(t - 1)(r - 1)/(n - 1)``. As the precision is linear in
    ``X_t``, the expectation is exact::

        E = (r/n) * sum_{t=1..n} (r0 + 1 + (t - 1) b) / (n0 + t),   b = (r-1)/(n-1)
          = (r/n) * (b n + (r0 + 1 - b (n0 + 1)) (H(n0 + n) - H(n0)))

    (b = 0 when n = 1). Note the expected precision at a relevant item is not
    the block's average precision ``(r0 + r)/(n0 + n)``: the expectation of a
    ratio is taken term by term.

    Args:
        r0, n0, n, r: broadcastable int64 arrays, n0 + n <= len(harmonic) - 1.
        harmonic: table from :func:`_harmonic_table`.

    Returns:
        The expected sum (float64), 0 where n == 0 or r == 0.
    """
    nf, rf = n.astype(np.float64), r.astype(np.float64)
    b = np.where(n > 1, (rf - 1.0) / np.maximum(nf - 1.0, 1.0), 0.0)
    dh = harmonic[n0 + n] - harmonic[n0]
    value = (rf / np.maximum(nf, 1.0)) * (b * nf + (r0 + 1.0 - b * (n0 + 1.0)) * dh)
    return np.where((n > 0) & (r > 0), value, 0.0)


def _tie_aware_ap(stats: _Stats, max_cells: int = _CHUNK_ELEMENTS) -> np.ndarray:
    """Expected AP (or AP@K) over uniformly random orders within every tie block.

    Blocks entirely within the top K contribute their expected precision sums
    (:func:`_expected_block_sum`). If a block straddles position K, taking m of
    its n places above the cut, the number X of its relevant items above the cut
    is hypergeometric(n, r, m), the normaliser is R0 + X, and given X = x the x
    relevant items are uniform over those m places. Hence, with S the expected
    sum of the earlier blocks (independent of X),
    ``E[AP@K] = sum_x P(X = x) (S + block_sum(r0, n0, m, x)) / (r0 + x)``,
    terms with r0 + x = 0 being 0.

    Args:
        stats: per-query histograms.
        max_cells: bound on the elements of a work array.

    Returns:
        (nq,) float64 expected AP.
    """
    harmonic = _harmonic_table(stats.num_database)
    log_fact = gammaln(np.arange(stats.num_database + 1, dtype=np.float64) + 1.0)  # log(i!)
    nq = len(stats.hist_all)
    ap = np.zeros(nq, np.float64)
    step = max(1, _TIE_ROWS_CELLS // (stats.bits + 1))
    for s in range(0, nq, step):
        ap[s : s + step] = _tie_aware_rows(
            stats.hist_all[s : s + step], stats.hist_rel[s : s + step], stats.topk,
            harmonic, log_fact, max_cells,
        )
    return ap


def _tie_aware_rows(
    n_b: np.ndarray,
    r_b: np.ndarray,
    big_k: int,
    harmonic: np.ndarray,
    log_fact: np.ndarray,
    max_cells: int,
) -> np.ndarray:
    """:func:`_tie_aware_ap` for a chunk of queries: (Qc, bits+1) histograms -> (Qc,)."""
    n0 = np.cumsum(n_b, 1) - n_b  # (Qc, bits+1) items before each block
    r0 = np.cumsum(r_b, 1) - r_b
    full = (n0 + n_b <= big_k) & (n_b > 0)
    early = np.where(full, _expected_block_sum(r0, n0, n_b, r_b, harmonic), 0.0).sum(1)
    rel_full = np.where(full, r_b, 0).sum(1)  # (Qc,)
    ap = _safe_div(early, rel_full)
    straddle = (n0 < big_k) & (n0 + n_b > big_k) & (r_b > 0)  # at most one block per row
    rows, cols = np.nonzero(straddle)
    if len(rows) == 0:
        return ap
    n_s, r_s, n0_s = n_b[rows, cols], r_b[rows, cols], n0[rows, cols]
    r0_s = rel_full[rows]
    m_s = big_k - n0_s  # places above the cut, 1..n-1
    x_lo = np.maximum(0, m_s - (n_s - r_s))
    x_hi = np.minimum(r_s, m_s)
    width = int((x_hi - x_lo).max()) + 1
    step = max(1, max_cells // width)
    for s in range(0, len(rows), step):
        sl = slice(s, s + step)
        x = x_lo[sl, None] + np.arange(width)[None, :]  # (Qs, W)
        valid = x <= x_hi[sl, None]
        xs = np.minimum(x, x_hi[sl, None])  # keep every term in range
        n_, r_, m_ = n_s[sl, None], r_s[sl, None], m_s[sl, None]
        log_p = (
            _log_comb(r_, xs, log_fact)
            + _log_comb(n_ - r_, m_ - xs, log_fact)
            - _log_comb(n_, m_, log_fact)
        )  # (Qs, W) hypergeometric log-pmf
        p = np.where(valid, np.exp(log_p), 0.0)
        inner = _expected_block_sum(r0_s[sl, None], n0_s[sl, None], m_, xs, harmonic)
        term = _safe_div(early[rows[sl], None] + inner, r0_s[sl, None] + xs) * p  # (Qs, W)
        ap[rows[sl]] = term.sum(1)
    return ap


def _log_comb(n: np.ndarray, k: np.ndarray, log_fact: np.ndarray) -> np.ndarray:
    return log_fact[n] - log_fact[k] - log_fact[n - k]


def _expected_rel_at_k(stats: _Stats, k: int) -> np.ndarray:
    """Expected relevant items within the first k under random tie orders.

    Args:
        stats: per-query histograms.
        k: cut-off, at most the database size.

    Returns:
        (nq,) float64.
    """
    n_b, r_b = stats.hist_all, stats.hist_rel
    n0 = np.cumsum(n_b, 1) - n_b
    inside = np.clip(k - n0, 0, n_b)  # (nq, bits+1) places of each block above the cut
    return (_safe_div(r_b * inside, n_b)).sum(1)
