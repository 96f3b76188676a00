"""Resumable jobs: encode a list of images into a gallery in chunks, then commit them.

A build or an add is a *job*: ``job.json`` lists its images, and the codes of every
``chunk_size`` images are written to ``chunks/`` as they are done. Running the same
command again after an interruption resumes at the first missing chunk. When the
last chunk is done the job is *committed*: codes, items and index are rewritten
(each atomically), then ``gallery.json`` records the new count and the job as done,
then the job files are removed. While ``job.json`` exists the gallery refuses to
search (it would answer from a partial gallery).
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fusnet.errors import DataError
from fusnet.index.backends import open_backend
from fusnet.index.layout import CHUNKS, CODES, ITEMS, JOB, SKIPPED, remove_stale_files, write_meta
from fusnet.index.sources import Item
from fusnet.runtime import atomic_write_text
from fusnet.serve.export import Encoder, open_image

logger = logging.getLogger(__name__)


def run_job(directory: Path, meta: dict[str, Any], items: list[Item], encoder: Encoder,
            batch_size: int, chunk_size: int) -> None:
    """Encode ``items`` into chunk files, resuming a job of the same images, then commit it."""
    job_path = directory / JOB
    if job_path.is_file():
        job = json.loads(job_path.read_text())
        if [tuple(x) for x in job["items"]] != items:
            raise DataError(
                f"{directory} holds an interrupted job over {len(job['items'])} images, not these "
                f"{len(items)}: rerun that command to finish it (or delete job.json and chunks/ "
                "to drop it)"
            )
        logger.info("resuming the interrupted job %d in %s", job["job"], directory)
    else:
        job = {"job": len(meta["jobs_done"]), "chunk_size": chunk_size, "items": items}
        atomic_write_text(job_path, json.dumps(job) + "\n")
    if job["job"] in meta["jobs_done"]:  # committed, then interrupted before clean-up
        _clean_job(directory)
        return
    chunks = directory / CHUNKS
    chunks.mkdir(exist_ok=True)
    size = job["chunk_size"]
    starts = range(0, len(items), size)
    with tqdm(total=len(items), desc="indexing", unit="img", disable=None) as bar:
        for number, start in enumerate(starts):
            path = chunks / f"{job['job']:04d}-{number:06d}.npz"
            part = items[start : start + size]
            if not path.is_file():
                _encode_chunk(part, encoder, batch_size, path)
            bar.update(len(part))
    _commit(directory, meta, job, [chunks / f"{job['job']:04d}-{n:06d}.npz" for n in range(len(starts))])


def _encode_chunk(part: list[Item], encoder: Encoder, batch_size: int, path: Path) -> None:
    """Encode the readable images of ``part`` into one chunk file (codes, kept rows, reasons)."""
    images, kept, skipped = [], [], []
    for position, (file, _) in enumerate(part):
        try:
            images.append(open_image(Path(file)))
            kept.append(position)
        except DataError as exc:
            logger.warning("skipped: %s", exc)
            skipped.append(str(exc.__cause__ or exc))
    codes = encoder.encode(images, batch_size) if images else np.zeros((0, (encoder.bits + 7) // 8), np.uint8)
    reasons = np.array(skipped, dtype=str)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, codes=codes, kept=np.array(kept, np.int64), reasons=reasons)
    tmp.replace(path)


def _commit(directory: Path, meta: dict[str, Any], job: dict[str, Any], chunk_files: list[Path]) -> None:
    """Add a finished job's chunks to the gallery: codes, items, index, then ``gallery.json``."""
    items = [tuple(x) for x in job["items"]]
    size = job["chunk_size"]
    new_codes, new_items, skipped = [], [], []
    for number, path in enumerate(chunk_files):
        with np.load(path) as chunk:
            part = items[number * size : (number + 1) * size]
            kept = set(chunk["kept"].tolist())
            new_codes.append(chunk["codes"])
            new_items.extend(part[p] for p in sorted(kept))
            reasons = iter(chunk["reasons"].tolist())
            skipped.extend((part[p][0], next(reasons)) for p in range(len(part)) if p not in kept)
    count = meta["count"]
    fresh = np.concatenate(new_codes)  # (m, nbytes)
    if count == 0 and len(fresh) == 0:
        _clean_job(directory)
        raise DataError(
            f"none of the {len(items)} images could be read (see the warnings); nothing was indexed "
            f"in {directory}"
        )
    old = np.load(directory / CODES)[:count] if count else fresh[:0]
    codes = np.concatenate([old, fresh])  # (count + m, nbytes)
    backend = open_backend(directory, meta["index"], meta["bits"], old, repair=True)
    if len(fresh):
        backend.add(fresh)
    tmp = directory / f".{CODES}.tmp.npy"
    np.save(tmp, codes)
    tmp.replace(directory / CODES)
    _append_rows(directory / ITEMS, ["id", "path", "label"],
                 [(count + i, p, label) for i, (p, label) in enumerate(new_items)], count)
    if skipped or (directory / SKIPPED).is_file():
        # the rows the gallery had committed (a re-run commit after a crash adds them once)
        _append_rows(directory / SKIPPED, ["path", "reason"], skipped, meta.get("skipped", 0))
    backend.save(directory)
    meta.update(count=len(codes), jobs_done=[*meta["jobs_done"], job["job"]], index=backend.describe(),
                skipped=meta.get("skipped", 0) + len(skipped))
    write_meta(directory, meta)
    _clean_job(directory)
    remove_stale_files(directory, meta)
    logger.info("%s: %d images indexed (%d skipped), %d in the gallery",
                directory, len(fresh), len(skipped), len(codes))


def _append_rows(path: Path, header: list[str], rows: list[tuple], keep: int | None) -> None:
    """Rewrite ``path`` atomically as its first ``keep`` data rows (None: all) plus ``rows``."""
    old: list[list[str]] = []
    if path.is_file():
        with path.open(newline="") as handle:
            old = list(csv.reader(handle))[1:]
    if keep is not None:
        old = old[:keep]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(old)
        writer.writerows(rows)
    tmp.replace(path)


def _clean_job(directory: Path) -> None:
    """Remove a job's files (``job.json`` and ``chunks/``)."""
    shutil.rmtree(directory / CHUNKS, ignore_errors=True)
    (directory / JOB).unlink(missing_ok=True)
