"""The files of a gallery directory, its ``gallery.json`` record, and how readers see them.

A gallery directory holds::

    gallery.json   format, code length, model id and file, index kind, count, finished jobs
    codes.npy      (>= count, ceil(bits / 8)) uint8 packed codes; row = id
    items.csv      id,path,label of every coded image
    skipped.csv    path,reason of every image that could not be read (skipped)
    ivf-N.faiss    the approximate index over N codes (kind "ivf" only)
    job.json       the images of a build or add in progress (``fusnet.index.jobs``)
    chunks/        that job's encoded chunks not yet committed
    .writer.lock   the writer lock, .writer.json its holder (``fusnet.index.lock``)

(kind "milvus": the codes are also in a Milvus collection, ``fusnet.index.milvus_backend``)

**Snapshots.** What a search sees is the *snapshot* that ``gallery.json`` names: its
``count`` first rows of ``codes.npy`` and ``items.csv`` and its index (the ``ivf-<count>``
file, or the collection's ids below ``count``). Writers only append: each commit writes
longer copies of the files and replaces them (``os.replace``), then replaces
``gallery.json`` (a new ``generation``), so the rows of a published snapshot never change
and a reader, which reads ``gallery.json`` once, never waits for a writer nor sees half a
commit. Rows past ``count`` are what a killed commit left; the next commit cuts them
(``gallery.json``'s ``sizes`` are the committed byte lengths of the CSV files). A gallery
written before snapshots were recorded is read the same way; its first commit adds
``generation`` and ``sizes``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fusnet.errors import DataError
from fusnet.runtime import atomic_write_text

FORMAT = "fusnet-gallery"
VERSION = 1
META, CODES, ITEMS, SKIPPED, JOB, CHUNKS = (
    "gallery.json", "codes.npy", "items.csv", "skipped.csv", "job.json", "chunks",
)


def read_meta(directory: Path) -> dict[str, Any]:
    """``gallery.json`` of ``directory``, refusing a folder that is not a gallery of this format."""
    path = directory / META
    if not path.is_file():
        raise DataError(f"{directory} is not a gallery ({META} missing): build one with `fusnet index build`")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(
            f"{path} is not a fusnet gallery of version {VERSION} (format {meta.get('format')!r}, "
            f"version {meta.get('version')!r}): build the gallery again with this fusnet"
        )
    return meta


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    """Publish ``meta`` as the next snapshot (``generation`` + 1): replace ``gallery.json`` atomically."""
    meta["generation"] = meta.get("generation", 0) + 1
    atomic_write_text(directory / META, json.dumps(meta, indent=2) + "\n")


def remove_stale_files(directory: Path, meta: dict[str, Any]) -> None:
    """Remove the ivf files of earlier counts (the committed one is named in ``gallery.json``).

    A reader that read the previous ``gallery.json`` and finds its file gone opens the
    new snapshot instead (``Gallery.open``).
    """
    for path in directory.glob("ivf-*.faiss"):
        if path.name != meta["index"].get("file"):
            path.unlink(missing_ok=True)
