"""The per-query statistics record, and the chunk tasks of
:func:`fusnet.eval.metrics._counting._retrieval_stats` that fill it, with their sizes.

Each task fills the rows of its queries in the shared :class:`_Context`'s :class:`_Stats`:
:func:`_histogram_task` for class-labelled queries (sort-free, by cumulative
counts over distance-and-segment cells), :func:`_sort_task` for any labels (a
stable radix sort of the distances). :func:`_run_tasks` runs them on worker
threads with per-thread scratch buffers (:func:`_scratch`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from fusnet.eval.metrics._arrays import _safe_div

# Bound on the histogram cells (queries x cells) one chunk may hold.
_CHUNK_ELEMENTS = 1 << 22
# Queries per chunk (defaults), and database items per tile of the histogram path
# (tiles of _TILE_ELEMENTS keep the matrix-product output and its integer copy in L2).
_HIST_CHUNK = 256
_SORT_CHUNK = 64
_SORT_ELEMENTS = 1 << 21  # queries x database per chunk of the sort path (~40 bytes each)
_TILE = 2048
_TILE_ELEMENTS = _HIST_CHUNK * _TILE
# Packed histogram counters: relevant items << 32 | all items.
_REL_SHIFT = 32
_REL_INC = 1 << _REL_SHIFT
_LOW_MASK = _REL_INC - 1
_HUGE = np.iinfo(np.int64).max
_EMPTY = torch.zeros(0, dtype=torch.int64)
_LOCAL = threading.local()  # per-thread scratch buffers
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
