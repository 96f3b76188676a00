"""A persistent gallery index on disk: build, add, open, search, convert.

The gallery's files are described in :mod:`fusnet.index.layout`; a build or an add
runs as a resumable job (:mod:`fusnet.index.jobs`) and the codes are searched by a
backend (:mod:`fusnet.index.backends`, :mod:`fusnet.index.milvus_backend`: this module
picks one). ``build``, ``add`` and ``convert`` are writers: one at a time per gallery
(:mod:`fusnet.index.lock`). Searches read the last published snapshot and never wait.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fusnet.errors import DataError
from fusnet.index.backends import DEFAULT_NPROBE, KINDS, Backend, IVFBackend, make_backend
from fusnet.index.jobs import run_job
from fusnet.index.layout import (
    CODES,
    FORMAT,
    ITEMS,
    JOB,
    META,
    VERSION,
    read_meta,
    remove_stale_files,
    write_meta,
)
from fusnet.index.lock import HOLDER, LOCK, writer_lock
from fusnet.index.sources import collect_images
from fusnet.serve.export import Encoder, load, open_image

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Hit:
    """One search result: its rank (1 = best), gallery id, Hamming distance, path, label."""

    rank: int
    id: int
    distance: int
    path: str
    label: str


def _check_model(directory: Path, meta: dict[str, Any], encoder: Encoder) -> None:
    """Refuse an encoder other than the one the gallery's codes come from."""
    if encoder.bits != meta["bits"] or encoder.model_id != meta["model_id"]:
        raise DataError(
            f"gallery {directory} holds {meta['bits']}-bit codes of model {meta['model_id']} "
            f"({meta['model']}), but {encoder.path} is {encoder.bits}-bit model {encoder.model_id}: "
            "search and add with the gallery's model, or build a new gallery with this one"
        )


def _encoder(directory: Path, meta: dict[str, Any], model: Encoder | str | Path | None) -> Encoder:
    """The gallery's encoder: ``model`` (loaded if a path) or the file recorded at build time."""
    if isinstance(model, Encoder):
        encoder = model
    else:
        path = Path(model) if model is not None else Path(meta["model"])
        if not path.is_file():
            raise DataError(
                f"the gallery's model file {path} is gone: pass the model it was built with "
                "(--model FILE, or model= in Python)"
            )
        encoder = load(path)
    _check_model(directory, meta, encoder)
    return encoder


# --- the operations ----------------------------------------------------------------------


def index_spec(directory: Path, kind: str, nlist: int | None = None, nprobe: int | None = None,
               uri: str | None = None, collection: str | None = None) -> dict[str, Any]:
    """``gallery.json``'s ``index`` for a kind and its options."""
    if kind not in KINDS:
        raise DataError(f"unknown index kind {kind!r}; choose from {', '.join(KINDS)}")
    if kind == "milvus":
        from fusnet.index.milvus_backend import milvus_spec

        return milvus_spec(directory, uri, collection, nlist, nprobe)
    return {"kind": kind, "nlist": nlist, "nprobe": nprobe}


def _prepare(spec: dict[str, Any], overwrite: bool) -> None:
    """Make ready what an index kind keeps outside the directory (a Milvus collection)."""
    if spec["kind"] == "milvus":
        from fusnet.index.milvus_backend import MilvusBackend

        MilvusBackend.prepare(spec, overwrite)


def open_backend(directory: Path, spec: dict[str, Any], bits: int, codes: np.ndarray,
                 repair: bool = False) -> Backend:
    """The backend of a gallery snapshot holding its ``codes`` ((count, nbytes) uint8).

    Args:
        directory: the gallery directory.
        spec: ``gallery.json``'s ``index``.
        bits: code length.
        codes: the snapshot's codes (row = id).
        repair: drop what an interrupted commit left in a server-side backend (ids >=
            count): writers only.

    Raises:
        DataError: the index does not hold the snapshot's codes.
        FileNotFoundError: the snapshot's ivf file is gone (a writer published a newer one).
    """
    kind = spec.get("kind")
    if kind == "ivf" and len(codes):
        backend: Backend = IVFBackend.load(directory / spec["file"], bits, spec.get("nprobe") or DEFAULT_NPROBE)
    elif kind == "milvus":
        from fusnet.index.milvus_backend import MilvusBackend

        backend = MilvusBackend.connect(spec, bits, count=len(codes), repair=repair)
    else:
        backend = make_backend(spec, bits)
        if len(codes):
            backend.add(codes)
    if backend.ntotal != len(codes):
        raise DataError(
            f"{directory}: its {kind} index holds {backend.ntotal} codes but codes.npy "
            f"{len(codes)}: the gallery is damaged; build it again"
        )
    return backend


def _run(directory: Path, meta: dict[str, Any], items: list, encoder: Encoder, batch_size: int,
         chunk_size: int) -> None:
    """Run (or resume) a job on a gallery whose writer lock is held."""
    count, nbytes = meta["count"], (meta["bits"] + 7) // 8
    codes = np.load(directory / CODES, mmap_mode="r")[:count] if count else np.zeros((0, nbytes), np.uint8)
    backend = open_backend(directory, meta["index"], meta["bits"], codes, repair=True)
    run_job(directory, meta, backend, items, encoder, batch_size, chunk_size)


def build(model: Encoder | str | Path, source: str | Path, output: str | Path, kind: str = "flat",
          nlist: int | None = None, nprobe: int | None = None, batch_size: int = 32,
          chunk_size: int = 512, overwrite: bool = False, uri: str | None = None,
          collection: str | None = None) -> Gallery:
    """Encode every image of a folder or CSV file into a new gallery directory.

    Rerunning the same call after an interruption resumes it.

    Args:
        model: an exported model file (``fusnet export``) or a loaded :class:`Encoder`.
        source: a folder of images (recursive; sub-folder = label) or a CSV with
            ``path`` and optional ``label`` columns.
        output: the gallery directory (created).
        kind: "flat" (exact), "ivf" (approximate, faiss ``IndexBinaryIVF``) or
            "milvus" (a Milvus collection at ``uri``).
        nlist: ivf lists (None: from the gallery's size); with "milvus", a
            ``BIN_IVF_FLAT`` index of that many lists (None: ``BIN_FLAT``).
        nprobe: lists scanned per query (None: the default).
        batch_size: images per forward pass.
        chunk_size: images per saved chunk (the unit of resumption).
        overwrite: replace a gallery already in ``output`` (and a Milvus collection).
        uri: the Milvus server ("milvus" only), e.g. ``http://127.0.0.1:19530``.
        collection: the Milvus collection (None: named after the directory).

    Returns:
        The opened gallery.
    """
    spec = index_spec(Path(output), kind, nlist, nprobe, uri, collection)
    encoder = model if isinstance(model, Encoder) else load(model)
    items = collect_images(source)
    directory = Path(output)
    if directory.is_dir() and _files(directory) and not (directory / META).is_file():
        raise DataError(f"{directory} exists and is not a gallery: choose an empty or new folder")
    directory.mkdir(parents=True, exist_ok=True)
    with writer_lock(directory):
        if (directory / META).is_file() and not overwrite:
            meta = read_meta(directory)
            if not (directory / JOB).is_file() or meta["jobs_done"]:
                raise DataError(
                    f"{directory} already holds a gallery of {meta['count']} images: add to it "
                    "with `fusnet index add`, or pass --overwrite to replace it"
                )
            _check_model(directory, meta, encoder)  # resume the build
        else:
            for path in sorted(_files(directory) if overwrite else [], key=lambda p: p.name != META):
                shutil.rmtree(path) if path.is_dir() else path.unlink()  # gallery.json first
            _prepare(spec, overwrite)
            meta = {
                "format": FORMAT, "version": VERSION, "bits": encoder.bits, "model_id": encoder.model_id,
                "model": str(encoder.path.resolve()), "index": spec,
                "count": 0, "skipped": 0, "jobs_done": [], "uid": uuid.uuid4().hex,
            }
            write_meta(directory, meta)
        _run(directory, meta, items, encoder, batch_size, chunk_size)
    return Gallery.open(directory)


def _files(directory: Path) -> list[Path]:
    """What ``directory`` holds besides the writer lock's files."""
    return [p for p in directory.iterdir() if p.name not in (LOCK, HOLDER)]


def add(directory: str | Path, source: str | Path, model: Encoder | str | Path | None = None,
        batch_size: int = 32, chunk_size: int = 512) -> Gallery:
    """Append the images of a folder or CSV file to a gallery (new ids follow the old).

    Args:
        directory: a gallery built by :func:`build`.
        source: as for :func:`build`.
        model: the gallery's model (None: the file recorded at build time).
        batch_size: images per forward pass.
        chunk_size: images per saved chunk.

    Returns:
        The opened gallery.
    """
    directory = Path(directory)
    read_meta(directory)  # a gallery, before a lock file is made in it
    with writer_lock(directory):
        meta = read_meta(directory)
        encoder = _encoder(directory, meta, model)
        _run(directory, meta, collect_images(source), encoder, batch_size, chunk_size)
    return Gallery.open(directory)


def search(directory: str | Path, images: Any, k: int = 10, model: Encoder | str | Path | None = None,
           nprobe: int | None = None, sheet: str | Path | None = None) -> list[list[Hit]]:
    """The k nearest gallery images of each query image.

    Args:
        directory: a gallery.
        images: one query (path, PIL image, tensor) or a list of them.
        k: hits per query (at most the gallery's size).
        model: the gallery's model (None: the file recorded at build time).
        nprobe: ivf lists scanned (None: the gallery's setting).
        sheet: save a contact sheet PNG here (several queries: ``NAME-1.png``, ...).

    Returns:
        One list of :class:`Hit` per query, best first.
    """
    gallery = Gallery.open(directory, nprobe=nprobe)
    encoder = _encoder(gallery.directory, gallery.meta, model)
    queries = images if isinstance(images, list | tuple) else [images]
    hits = gallery.search_codes(encoder.encode(queries), k)
    if sheet is not None:
        from fusnet.serve.search import save_contact_sheet

        sheet = Path(sheet)
        for number, (query, row) in enumerate(zip(queries, hits, strict=True), 1):
            target = sheet if len(queries) == 1 else sheet.with_name(f"{sheet.stem}-{number}{sheet.suffix}")
            shown = open_image(Path(query)) if isinstance(query, str | Path) else query
            if not isinstance(shown, Image.Image):
                raise ValueError("a contact sheet needs the queries as image files or PIL images")
            found = [open_image(Path(h.path)) for h in row]
            captions = [{"class_name": h.label or Path(h.path).name, "distance": h.distance} for h in row]
            save_contact_sheet(shown, found, captions, target)
    return hits


def convert(directory: str | Path, kind: str, nlist: int | None = None, nprobe: int | None = None,
            uri: str | None = None, collection: str | None = None, overwrite: bool = False) -> Gallery:
    """Move a gallery to another index kind (faiss flat or ivf, Milvus) from its ``codes.npy``.

    No image is read again. The new index is complete before ``gallery.json`` names
    it; a Milvus collection the gallery leaves is kept (drop it on the server).

    Args:
        directory: a gallery.
        kind, nlist, nprobe, uri, collection: as for :func:`build`.
        overwrite: replace an existing Milvus collection of that name.

    Returns:
        The opened gallery.
    """
    directory = Path(directory)
    read_meta(directory)  # a gallery, before a lock file is made in it
    with writer_lock(directory):
        gallery = Gallery.open(directory)
        spec = index_spec(directory, kind, nlist, nprobe, uri, collection)
        _prepare(spec, overwrite)
        backend = open_backend(directory, spec, gallery.bits, gallery.codes[:0])
        backend.add(np.asarray(gallery.codes))
        backend.save(directory)
        meta = {**gallery.meta, "index": backend.describe()}
        write_meta(directory, meta)
        remove_stale_files(directory, meta)
    logger.info("%s: %d codes moved to a %s index", directory, gallery.count, kind)
    return Gallery.open(directory)


class Gallery:
    """An opened gallery: its codes, items and search backend (use :meth:`open`)."""

    def __init__(self, directory: Path, meta: dict[str, Any], codes: np.ndarray,
                 items: list[tuple[str, str]], backend: Backend, nprobe: int | None = None) -> None:
        self.directory, self.meta, self.codes, self.items, self.backend, self.nprobe = (
            directory, meta, codes, items, backend, nprobe)

    @property
    def count(self) -> int:
        """Images in the gallery."""
        return len(self.items)

    @property
    def bits(self) -> int:
        return int(self.meta["bits"])

    @classmethod
    def open(cls, directory: str | Path, nprobe: int | None = None, previous: Gallery | None = None) -> Gallery:
        """Open the gallery's last published snapshot, refusing one that is damaged.

        Never waits for a writer: of a build or add in progress (or killed) it sees the
        chunks committed so far. The object is that snapshot; :meth:`refresh` moves to a
        later one.

        Args:
            directory: the gallery directory.
            nprobe: ivf lists scanned per query (None: the gallery's setting).
            previous: an earlier snapshot of this gallery whose items are reused.
        """
        directory = Path(directory)
        meta = read_meta(directory)
        for _ in range(10):
            try:
                return cls._open(directory, meta, nprobe, previous)
            except FileNotFoundError as exc:  # a writer published a newer snapshot meanwhile?
                fresh = read_meta(directory)
                if fresh == meta:
                    raise DataError(f"{directory} is damaged: {exc.filename} is missing; build it again") from exc
                meta = fresh
        raise DataError(f"{directory} changed ten times while it was being opened: search again")

    def refresh(self) -> Gallery:
        """The gallery's last published snapshot: this one, unless a writer published since.

        For a searcher that stays open: only the rows added since are read.
        """
        if read_meta(self.directory).get("generation") == self.meta.get("generation"):
            return self
        return Gallery.open(self.directory, self.nprobe, previous=self)

    @classmethod
    def _open(cls, directory: Path, meta: dict[str, Any], nprobe: int | None,
              previous: Gallery | None) -> Gallery:
        count = meta["count"]
        if count == 0:
            todo = ("its build is running or was interrupted (rerun it to finish)" if (directory / JOB).is_file()
                    else "add some with `fusnet index add`")
            raise DataError(f"{directory} holds no image: {todo}")
        codes = np.load(directory / CODES, mmap_mode="r")  # read on demand: ivf and milvus need no copy
        reuse = (previous is not None and previous.meta.get("uid") == meta.get("uid")
                 and previous.count <= count and ITEMS in previous.meta.get("sizes", {}))
        with (directory / ITEMS).open("rb") as raw:  # rows are only appended: an earlier snapshot's stay
            raw.seek(previous.meta["sizes"][ITEMS] if reuse else 0)
            rows = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
            if not reuse:
                next(rows, None)  # the header
            items = list(previous.items) if reuse else []  # type: ignore[union-attr]
            items += [(row[1], row[2]) for row in itertools.islice(rows, count - len(items))]
        if len(codes) < count or len(items) < count:  # rows past count: a commit not published
            raise DataError(
                f"{directory} is inconsistent: {META} says {count} images, {CODES} holds "
                f"{len(codes)} and {ITEMS} {len(items)}: build the gallery again"
            )
        if nprobe is not None:
            meta = {**meta, "index": {**meta["index"], "nprobe": nprobe}}
        codes = codes[:count]
        return cls(directory, meta, codes, items, open_backend(directory, meta["index"], meta["bits"], codes), nprobe)

    def search_codes(self, packed: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Hits for packed query codes, (nq, ceil(bits / 8)) uint8."""
        if k < 1:
            raise DataError(f"k must be at least 1, got {k}")
        distances, ids = self.backend.search(packed, k)
        return [
            [Hit(rank, int(i), int(d), *self.items[int(i)])
             for rank, (d, i) in enumerate(zip(drow, irow, strict=True), 1) if i >= 0]
            for drow, irow in zip(distances, ids, strict=True)
        ]
