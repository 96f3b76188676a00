"""Retrieval metrics for binary codes: mAP (two tie conventions), precision/recall.

Ranking and relevance
---------------------
A query ranks the whole database by Hamming distance. Codes are ``{-1, +1}``
arrays (torch tensors or numpy arrays) of shape ``(n, bits)``. Labels are either
class ids ``(n,)`` (relevant = same class) or multi-hot ``(n, C)`` (relevant =
shares at least one label). One-hot label matrices are recognised and treated
as class ids.

Hamming distances take few values (``0..bits``), so ties are common (at 12 bits
massively). Every function says which of two conventions a number uses:

``ties="index"``
    Tied items are ordered by database index (a stable sort): deterministic. The public
    deep-hashing code (DPSH, ADSH, SEMICON: ``np.argsort``) leaves it to its unstable sort.
``ties="average"``
    The expectation over all orders of the tied items (McSherry & Najork, ECIR 2008):
    exact, closed form, from per-distance counts
    (:func:`fusnet.eval.metrics._tie_aware._expected_block_sum`).

Every function takes ``query_codes`` (nq, bits) and ``db_codes`` (N, bits) in {-1, +1},
``query_labels`` and ``db_labels`` of one kind, and ``chunk_size``, the queries per chunk
(None picks one from a memory budget).

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

Under ``ties="average"`` with ``topk`` the normaliser is random when a tie block
straddles position k; the expected ratio is exact, conditioning on the relevant items
the block places above the cut (hypergeometric).

Computation
-----------
Exact, bounded in memory (queries in chunks, the database in tiles) and sort-free for
class labels: distances come from a matrix product of ``+-1`` codes, ``dist = (bits -
q . d) / 2``, and each relevant item's position and rank follow from cumulative counts
over distance cells (:func:`fusnet.eval.metrics._chunk_tasks._histogram_task`); multi-hot
labels and very large classes use a stable radix sort instead. Chunks run on
``torch.get_num_threads()`` worker threads with single-threaded torch kernels (far less
hurt than per-kernel threading when cores are shared); the thread setting is restored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fusnet.eval.metrics._arrays import ArrayLike, _safe_div
from fusnet.eval.metrics._chunk_tasks import _Stats
from fusnet.eval.metrics._counting import _retrieval_stats
from fusnet.eval.metrics._tie_aware import _expected_rel_at_k, _tie_aware_ap

logger = logging.getLogger(__name__)

Ties = Literal["index", "average"]

_TIES = ("index", "average")


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
        topk: rank cut-off k for mAP@k (AP normalised by the relevant items
            retrieved within the top k); None ranks the whole database.
        ties: "index" (ties broken by database index, deterministic) or
            "average" (expected AP over all orders of tied items).

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


def _relevant_at_k(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    k: int,
    ties: Ties,
    chunk_size: int | None,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Per query: relevant items among the first k (expected under ``ties="average"``),
    the cut-off capped at the database size, and the number of relevant items."""
    _check_ties(ties)
    stats = _retrieval_stats(
        query_codes, db_codes, query_labels, db_labels, ks=(k,), chunk_size=chunk_size
    )
    kk = min(k, stats.num_database)
    rel = stats.rel_at_k[:, 0] if ties == "index" else _expected_rel_at_k(stats, kk)
    return rel, kk, stats.num_relevant


def precision_at_k(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    k: int,
    ties: Ties = "index",
    chunk_size: int | None = None,
) -> float:
    """Mean over all queries of precision@k: relevant items among the first k (>= 1,
    capped at the database size; expected under ``ties="average"``), divided by k."""
    rel, kk, _ = _relevant_at_k(query_codes, db_codes, query_labels, db_labels, k, ties, chunk_size)
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
    """Mean over all queries of recall@k: relevant items among the first k (as for
    :func:`precision_at_k`) over all relevant items; a query without any counts as 0."""
    rel, _, num_relevant = _relevant_at_k(
        query_codes, db_codes, query_labels, db_labels, k, ties, chunk_size
    )
    return float(_safe_div(rel, num_relevant).mean()) if len(rel) else 0.0


def precision_recall_by_radius(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    chunk_size: int | None = None,
) -> RadiusCurve:
    """Precision and recall of Hamming-ball lookups for every radius 0..bits, means over
    all queries (independent of tie order: a ball holds whole tie blocks)."""
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
        ks: cut-offs for precision@k and recall@k (ties by index).
        topk: cut-off of the mAP figures (None: whole ranking).
        per_query: also return the per-query AP lists (``ap``, ``ap_tie_aware``),
            e.g. for paired tests.

    Returns:
        ``map`` (ties by index), ``map_tie_aware``, ``topk``, ``bits``, ``num_queries``,
        ``num_database``, ``num_queries_without_relevant`` (in the whole database),
        ``precision@k`` and ``recall@k`` for each k (ties by index, k capped at the
        database size), ``ties`` (a note naming the conventions).
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


def _check_ties(ties: str) -> None:
    if ties not in _TIES:
        raise ValueError(f"ties must be one of {_TIES}, got {ties!r}")


def _warn_no_relevant(stats: _Stats) -> int:
    missing = int((stats.num_relevant == 0).sum())
    if missing:
        logger.warning(
            "%d of %d queries have no relevant database item; their AP counts as 0",
            missing, len(stats.num_relevant),
        )
    return missing
