"""Notebook 10's photos (Flowers-17's, as one's own): a gallery, photos added to it and
queries in neither, and the hits of its searches as a table and a contact sheet.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fusnet.data import build_dataset
from fusnet.errors import ConfigError
from fusnet.experiments.config import resolve_path
from fusnet.experiments.examples import precision_at as precision_at  # notebook 10 reads it here
from fusnet.experiments.plots import retrieval_figure
from fusnet.index import Hit


def photo_root(photos: str | None, data_root: str | dict | None) -> Path:
    """The Flowers-17 folder: ``photos`` if given, else ``<data_root>/flowers17``."""
    if photos is not None:
        return resolve_path(photos)
    if isinstance(data_root, dict) and "flowers17" in data_root:
        return resolve_path(data_root["flowers17"])
    if isinstance(data_root, str):
        return resolve_path(data_root) / "flowers17"
    raise ConfigError("notebook 10 needs photos= (a Flowers-17 folder) or --data-root holding flowers17/")


def _spread(count: int, total: int) -> np.ndarray:
    """``count`` indices spread evenly over ``range(total)``."""
    if not 1 <= count <= total:
        raise ConfigError(f"asked for {count} photos out of {total}")
    return np.linspace(0, total - 1, count).round().astype(int)


def photo_sets(root: Path, num_gallery: int, num_added: int, num_queries: int) -> dict[str, pd.DataFrame]:
    """Gallery, added and query photos (``path``, ``label``): the first two disjoint, spread
    over the training split by class, the queries over the test split."""
    train, test = (build_dataset("flowers17", root, split) for split in ("train", "test"))

    def by_class(dataset) -> list[int]:
        return sorted(range(len(dataset)), key=lambda i: (dataset.samples[i][1],
                                                          str(dataset.samples[i][0])))

    def frame(dataset, indices) -> pd.DataFrame:
        rows = [(str(dataset.samples[i][0]), dataset.class_names[dataset.samples[i][1]])
                for i in indices]
        return pd.DataFrame(rows, columns=["path", "label"])

    order, test_order = by_class(train), by_class(test)
    picked = [order[i] for i in _spread(num_gallery + num_added, len(order))]
    added = set(np.random.default_rng(0).choice(len(picked), num_added, replace=False).tolist())

    return {
        "gallery": frame(train, [p for j, p in enumerate(picked) if j not in added]),
        "added": frame(train, [p for j, p in enumerate(picked) if j in added]),
        "queries": frame(test, [test_order[i] for i in _spread(num_queries, len(test_order))]),
    }


def write_source(frame: pd.DataFrame, path: Path) -> Path:
    """A CSV (``path,label``) that ``fusnet index build``/``add`` reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows(frame[["path", "label"]].itertuples(index=False))
    return path


def hits_table(queries: pd.DataFrame, hits: list[list[Hit]]) -> pd.DataFrame:
    """One row per (query, hit): query path and class, rank, id, distance, hit path and class."""
    rows = [
        {"query": q, "query_label": ql, "rank": h.rank, "id": h.id, "distance": h.distance,
         "path": h.path, "label": h.label, "correct": h.label == ql}
        for (q, ql), row in zip(queries[["path", "label"]].itertuples(index=False), hits, strict=True)
        for h in row
    ]
    return pd.DataFrame(rows)


def _thumb(path: str, size: int) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size, size)))  # (size, size, 3)


def contact_sheet(table: pd.DataFrame, k: int, title: str = "", size: int = 96):
    """Queries and their top-k gallery photos (``plots.retrieval_figure``)."""
    top = table[table["rank"] <= k]
    queries = list(dict.fromkeys(top["query"]))
    per_query = [top[top["query"] == q].sort_values("rank") for q in queries]
    return retrieval_figure(
        queries=[_thumb(q, size) for q in queries],
        results=[[_thumb(p, size) for p in rows["path"]] for rows in per_query],
        correct=np.stack([rows["correct"].to_numpy() for rows in per_query]),
        distances=np.stack([rows["distance"].to_numpy() for rows in per_query]),
        captions=[rows["query_label"].iloc[0] for rows in per_query],
        title=title,
    )
