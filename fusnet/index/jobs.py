"""Resumable jobs: encode a list of images into a gallery in chunks, committing them as they go.

A build or an add is a *job*: ``job.json`` lists its images, and the codes of every
``chunk_size`` images are written to ``chunks/`` as they are done, then *committed*:
codes, items and index are written again longer (each atomically), then
``gallery.json`` publishes the new snapshot with the job's progress (``running``: its
chunks committed), so searches see each chunk as it lands (``fusnet.index.layout``).
An ivf index is trained on the first codes it is given, so the job that starts one
commits its chunks together at the end. Running the same command again after an
interruption resumes at the first chunk not committed; the last commit records the job
as done and removes ``job.json`` and ``chunks/``. Jobs run under the gallery's writer
lock with the backend that ``fusnet.index.gallery`` opened for them.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fusnet.errors import DataError
from fusnet.index.backends import Backend
from fusnet.index.layout import CHUNKS, CODES, ITEMS, JOB, SKIPPED, remove_stale_files, write_meta
from fusnet.index.sources import Item
from fusnet.runtime import atomic_write_text
from fusnet.serve.export import Encoder, open_image

logger = logging.getLogger(__name__)


def run_job(directory: Path, meta: dict[str, Any], backend: Backend, items: list[Item],
            encoder: Encoder, batch_size: int, chunk_size: int) -> None:
    """Encode ``items`` in chunks and commit them, resuming a job of the same images.

    Args:
        directory: the gallery, its writer lock held.
        meta: its ``gallery.json`` (updated at every commit).
        backend: its index, holding exactly the committed codes.
        items: the images to add.
        encoder: the gallery's model.
        batch_size: images per forward pass.
        chunk_size: images per chunk (of a new job; a resumed one keeps its own).
    """
    job_path = directory / JOB
    resumed = job_path.is_file()
    if resumed:
        job = json.loads(job_path.read_text())
        if [tuple(x) for x in job["items"]] != items:
            raise DataError(
                f"{directory} holds an interrupted job over {len(job['items'])} images, not these "
                f"{len(items)}: rerun that command to finish it (or delete job.json and chunks/ "
                "to drop it; the chunks it committed stay in the gallery)"
            )
        logger.info("resuming the interrupted job %d in %s", job["job"], directory)
    else:
        _clean_job(directory)  # chunks of a dropped job
        job = {"job": len(meta["jobs_done"]), "chunk_size": chunk_size, "items": items}
        atomic_write_text(job_path, json.dumps(job) + "\n")
    if job["job"] in meta["jobs_done"]:  # committed, then interrupted before clean-up
        _clean_job(directory)
        return
    running = meta.get("running") or {}  # not this job's if its job.json was deleted
    done = running.get("chunks", 0) if resumed and running.get("job") == job["job"] else 0
    chunks = directory / CHUNKS
    chunks.mkdir(exist_ok=True)
    size = job["chunk_size"]
    total = -(-len(items) // size)
    pending: list[Path] = []
    with tqdm(total=len(items), initial=min(done * size, len(items)), desc="indexing", unit="img",
              disable=None) as bar:
        for number in range(done, total):
            path = chunks / f"{job['job']:04d}-{number:06d}.npz"
            part = items[number * size : (number + 1) * size]
            if not path.is_file():
                _encode_chunk(part, encoder, batch_size, path)
            pending.append(path)
            bar.update(len(part))
            if backend.ntotal or backend.kind != "ivf" or number == total - 1:  # ivf: trained on all
                _commit(directory, meta, backend, job, number + 1 - len(pending), pending)
                pending = []


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


def _commit(directory: Path, meta: dict[str, Any], backend: Backend, job: dict[str, Any], first: int,
            chunk_files: list[Path]) -> None:
    """Publish a job's chunks ``first, first + 1, ...``: codes, items, index, then ``gallery.json``."""
    size, total = job["chunk_size"], len(job["items"])
    final = (first + len(chunk_files)) * size >= total
    new_codes, new_items, skipped = [], [], []
    for number, path in enumerate(chunk_files, first):
        with np.load(path) as chunk:
            part = [tuple(x) for x in job["items"][number * size : (number + 1) * size]]
            kept = set(chunk["kept"].tolist())
            new_codes.append(chunk["codes"])
            new_items.extend(part[p] for p in sorted(kept))
            reasons = iter(chunk["reasons"].tolist())
            skipped.extend((part[p][0], next(reasons)) for p in range(len(part)) if p not in kept)
    count = meta["count"]
    fresh = np.concatenate(new_codes)  # (m, nbytes)
    if final and count == 0 and len(fresh) == 0:
        _clean_job(directory)
        raise DataError(
            f"none of the {total} images could be read (see the warnings); nothing was indexed "
            f"in {directory}"
        )
    if len(fresh):
        backend.add(fresh)
        old = np.load(directory / CODES, mmap_mode="r")[:count] if count else fresh[:0]
        tmp = directory / f".{CODES}.tmp.npy"
        np.save(tmp, np.concatenate([old, fresh]))  # (count + m, nbytes)
        tmp.replace(directory / CODES)
    sizes = dict(meta.get("sizes", {}))
    sizes[ITEMS] = _append_rows(directory / ITEMS, ["id", "path", "label"],
                                [(count + i, p, label) for i, (p, label) in enumerate(new_items)],
                                count, sizes.get(ITEMS))
    if skipped or (directory / SKIPPED).is_file():
        sizes[SKIPPED] = _append_rows(directory / SKIPPED, ["path", "reason"], skipped,
                                      meta.get("skipped", 0), sizes.get(SKIPPED))
    backend.save(directory)
    meta.update(count=count + len(fresh), index=backend.describe(), sizes=sizes,
                skipped=meta.get("skipped", 0) + len(skipped))
    if final:
        meta["jobs_done"] = [*meta["jobs_done"], job["job"]]
        meta.pop("running", None)
    else:
        meta["running"] = {"job": job["job"], "chunks": first + len(chunk_files)}
    write_meta(directory, meta)
    if final:
        _clean_job(directory)
    for path in chunk_files:
        path.unlink(missing_ok=True)
    remove_stale_files(directory, meta)
    logger.info("%s: %d images indexed (%d skipped), %d in the gallery",
                directory, len(fresh), len(skipped), meta["count"])


def _append_rows(path: Path, header: list[str], rows: list[tuple], keep: int, size: int | None) -> int:
    """Write the CSV ``path`` again (atomically) as its committed rows plus ``rows``; its new size.

    The committed part is the file's first ``size`` bytes, copied as they are (bytes past
    them were left by a killed commit). Without ``size`` (a gallery from before sizes were
    recorded) it is the header and the first ``keep`` data rows, parsed.
    """
    if size is None:
        old: list[list[str]] = []
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as handle:
                old = list(itertools.islice(csv.reader(handle), 1, keep + 1))
        head = _csv_bytes([header, *old])
    else:
        with path.open("rb") as handle:
            head = handle.read(size)
    data = head + _csv_bytes(rows)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return len(data)


def _csv_bytes(rows: list) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _clean_job(directory: Path) -> None:
    """Remove a job's files (``job.json`` and ``chunks/``)."""
    shutil.rmtree(directory / CHUNKS, ignore_errors=True)
    (directory / JOB).unlink(missing_ok=True)
