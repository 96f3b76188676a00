"""The counting engine behind :mod:`fusnet.eval.metrics`: per-query statistics in one pass.

:func:`_retrieval_stats` checks the codes and labels (:mod:`~fusnet.eval.metrics._arrays`),
splits the queries into chunks and runs them on worker threads
(:mod:`~fusnet.eval.metrics._chunk_tasks`): class-labelled queries through the sort-free
histogram path, multi-hot labels and very large classes through a stable radix sort. The
resulting ``_Stats`` record gives every figure of :mod:`fusnet.eval.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from fusnet.eval.metrics._arrays import ArrayLike, _as_codes, _prepare_labels
from fusnet.eval.metrics._chunk_tasks import (
    _CHUNK_ELEMENTS,
    _HIST_CHUNK,
    _SORT_CHUNK,
    _SORT_ELEMENTS,
    _class_relevance,
    _Context,
    _histogram_task,
    _multi_relevance,
    _run_tasks,
    _sort_task,
    _Stats,
)

# Classes of queries one histogram chunk may mix.
_MAX_CLASSES_PER_CHUNK = 16
# The histogram path is used while (R + 1) * (bits + 1) <= _HIST_FACTOR * N.
_HIST_FACTOR = 4


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
    out = _Stats(  # histogram counts < 2**31 (the database size): int32
        num_database=n, bits=bits, topk=n if topk is None else min(topk, n), ks=ks,
        num_relevant=np.zeros(nq, np.int64), hist_all=np.zeros((nq, bits + 1), np.int32),
        hist_rel=np.zeros((nq, bits + 1), np.int32), ap_index=np.zeros(nq, np.float64),
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
