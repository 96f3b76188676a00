"""Retrieval examples (Fig. 12): queries, their top-k database images, right or wrong.

Works from a finished run's ``codes.npz`` (packed database and query codes, in
the dataset's item order) and the dataset itself (for the pictures); neighbours
come from :func:`fusnet.eval.retrieval.hamming_topk`, ties broken by database index.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from fusnet.config import RunConfig
from fusnet.errors import DataError
from fusnet.eval.retrieval import hamming_topk

logger = logging.getLogger(__name__)


def load_packed_codes(path: Path) -> dict[str, Any]:
    """A run's ``codes.npz`` as saved: packed ``db_codes``/``query_codes`` and labels.

    Raises:
        DataError: the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing: the run did not finish")
    with np.load(path) as payload:
        return {key: payload[key] for key in payload.files}


def choose_queries(labels: np.ndarray, count: int) -> np.ndarray:
    """Query indices from distinct classes, classes spread over the label range.

    Round 0 takes the first query of each of ``min(count, classes)`` classes
    picked evenly across the sorted class ids; later rounds (when ``count``
    exceeds the classes) take each class's next query. Deterministic.

    Args:
        labels: (N,) query labels.
        count: how many queries (at most N).

    Returns:
        (count,) int64 indices into ``labels``.
    """
    labels = np.asarray(labels)
    if not 1 <= count <= len(labels):
        raise ValueError(f"count must be in 1..{len(labels)}, got {count}")
    classes = np.unique(labels)
    spread = np.linspace(0, len(classes) - 1, num=min(count, len(classes))).round().astype(int)
    order = list(classes[spread]) + [c for c in classes if c not in set(classes[spread])]
    members = {c: np.flatnonzero(labels == c) for c in order}
    picked: list[int] = []
    for rank in range(int(max(len(m) for m in members.values()))):
        for c in order:
            if rank < len(members[c]) and len(picked) < count:
                picked.append(int(members[c][rank]))
    return np.asarray(picked, dtype=np.int64)


def retrieval_examples(codes: dict[str, Any], queries: np.ndarray, k: int) -> pd.DataFrame:
    """Top-k database items of each query, ties by database index.

    Args:
        codes: :func:`load_packed_codes`.
        queries: query indices (into the test split).
        k: neighbours per query.

    Returns:
        One row per (query, rank): ``query``, ``query_label``, ``rank`` (1..k),
        ``db_index``, ``db_label``, ``distance`` and ``correct`` (same class).
    """
    queries = np.asarray(queries, dtype=np.int64)
    distances, indices = hamming_topk(codes["query_codes"][queries], codes["db_codes"], k)
    q_labels = codes["query_labels"][queries]  # (nq,)
    db_labels = codes["db_labels"][indices]  # (nq, k)
    return pd.DataFrame(
        {
            "query": np.repeat(queries, k),
            "query_label": np.repeat(q_labels, k),
            "rank": np.tile(np.arange(1, k + 1), len(queries)),
            "db_index": indices.ravel(),
            "db_label": db_labels.ravel(),
            "distance": distances.ravel(),
            "correct": (db_labels == q_labels[:, None]).ravel(),
        }
    )


def precision_of_examples(examples: pd.DataFrame, ks: tuple[int, ...]) -> dict[str, float]:
    """Mean precision@k over the example queries, for each k in ``ks``."""
    return {
        f"precision@{k}": float(examples[examples["rank"] <= k].groupby("query")["correct"].mean().mean())
        for k in ks
    }


def split_dataset(config: RunConfig, split: str):
    """The run's dataset split, untransformed (items are PIL images)."""
    from fusnet.data import build_dataset
    from fusnet.train.batches import dataset_kwargs

    return build_dataset(
        config.data.dataset, config.data.root, split, verify=False, **dataset_kwargs(config)
    )


def thumbnails(dataset, indices: np.ndarray, size: int = 96) -> list[Image.Image]:
    """Square thumbnails (resized shorter side, centre crop) of dataset items."""
    out = []
    for i in np.asarray(indices).tolist():
        image = dataset.load_image(int(i))
        scale = size / min(image.size)
        image = image.resize((max(size, round(image.width * scale)),
                              max(size, round(image.height * scale))), Image.BILINEAR)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        out.append(image.crop((left, top, left + size, top + size)))
    return out


def examples_for_run(run_path: Path, num_queries: int, k: int) -> pd.DataFrame:
    """:func:`retrieval_examples` of a finished run's ``codes.npz`` for spread-out queries."""
    codes = load_packed_codes(Path(run_path) / "codes.npz")
    queries = choose_queries(codes["query_labels"], min(num_queries, len(codes["query_labels"])))
    return retrieval_examples(codes, queries, min(k, len(codes["db_labels"])))


def example_images(
    config: RunConfig, examples: pd.DataFrame, k: int, size: int = 96
) -> dict[str, Any]:
    """Pictures and marks for :func:`fusnet.experiments.plots.retrieval_figure`.

    Args:
        config: the run's config (which dataset to read the pictures from).
        examples: :func:`retrieval_examples` (at least ``k`` ranks a query).
        k: results shown per query.
        size: thumbnail side in pixels.

    Returns:
        ``queries`` (thumbnails), ``results`` (k thumbnails a query), ``correct`` and
        ``distances`` (nq, k), and ``captions`` (the queries' class names).

    Raises:
        DataError: the dataset no longer matches the codes (another size).
    """
    database, queries = split_dataset(config, "train"), split_dataset(config, "test")
    top = examples[examples["rank"] <= k]
    order = list(dict.fromkeys(top["query"].tolist()))
    if top["db_index"].max() >= len(database) or max(order) >= len(queries):
        raise DataError(
            f"{config.data.dataset}: the codes index more images than the dataset has; "
            "the data changed since the run"
        )
    db_index = top["db_index"].to_numpy().reshape(len(order), k)
    return {
        "queries": thumbnails(queries, np.asarray(order), size),
        "results": [thumbnails(database, row, size) for row in db_index],
        "correct": top["correct"].to_numpy().reshape(len(order), k),
        "distances": top["distance"].to_numpy().reshape(len(order), k),
        "captions": [queries.class_names[int(queries.labels[q])] for q in order],
    }
