"""Retrieval examples (Fig. 12): queries, their top-k database images (``hamming_topk``,
ties by database index), right or wrong, from a finished run's ``codes.npz`` and dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from fusnet.config import RunConfig
from fusnet.errors import DataError
from fusnet.eval.retrieval import hamming_topk


def load_packed_codes(path: Path) -> dict[str, Any]:
    """A run's ``codes.npz``: packed ``db_codes``/``query_codes`` and labels."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing: the run did not finish")
    with np.load(path) as payload:
        return {key: payload[key] for key in payload.files}


def choose_queries(labels: np.ndarray, count: int) -> np.ndarray:
    """(count,) indices into ``labels``: the first item of ``min(count, classes)`` classes
    spread evenly over the class ids, then each class's next item, round by round."""
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
    """The top-k database items of each query (test split indices), a row per (query, rank)."""
    queries = np.asarray(queries, dtype=np.int64)
    distances, indices = hamming_topk(codes["query_codes"][queries], codes["db_codes"], k)
    q_labels = codes["query_labels"][queries]  # (nq,)
    db_labels = codes["db_labels"][indices]  # (nq, k)
    return pd.DataFrame({
        "query": np.repeat(queries, k), "query_label": np.repeat(q_labels, k),
        "rank": np.tile(np.arange(1, k + 1), len(queries)), "db_index": indices.ravel(),
        "db_label": db_labels.ravel(), "distance": distances.ravel(),
        "correct": (db_labels == q_labels[:, None]).ravel(),
    })


def precision_at(table: pd.DataFrame, k: int) -> float:
    """Mean share of same-class results (``correct``) in the top k (``rank``), over queries."""
    return float(table[table["rank"] <= k].groupby("query")["correct"].mean().mean())


def precision_of_examples(examples: pd.DataFrame, ks: tuple[int, ...]) -> dict[str, float]:
    """Mean precision@k over the example queries, for each k in ``ks``."""
    return {f"precision@{k}": precision_at(examples, k) for k in ks}


def split_dataset(config: RunConfig, split: str):
    """The run's dataset split, untransformed (items are PIL images)."""
    from fusnet.data import build_dataset
    from fusnet.train.batches import dataset_kwargs

    return build_dataset(config.data.dataset, config.data.root, split, verify=False,
                         **dataset_kwargs(config))


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


def example_images(config: RunConfig, examples: pd.DataFrame, k: int,
                   size: int = 96) -> dict[str, Any]:
    """``plots.retrieval_figure``'s arguments for ``k`` results a query of
    :func:`retrieval_examples`; a DataError where the dataset no longer matches the codes."""
    database, queries = split_dataset(config, "train"), split_dataset(config, "test")
    top = examples[examples["rank"] <= k]
    order = list(dict.fromkeys(top["query"].tolist()))
    if top["db_index"].max() >= len(database) or max(order) >= len(queries):
        raise DataError(f"{config.data.dataset}: the codes index more images than the dataset "
                        "has; the data changed since the run")
    db_index = top["db_index"].to_numpy().reshape(len(order), k)
    return {
        "queries": thumbnails(queries, np.asarray(order), size),
        "results": [thumbnails(database, row, size) for row in db_index],
        "correct": top["correct"].to_numpy().reshape(len(order), k),
        "distances": top["distance"].to_numpy().reshape(len(order), k),
        "captions": [queries.class_names[int(queries.labels[q])] for q in order],
    }
