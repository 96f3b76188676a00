"""A gallery backend on Milvus: binary vectors, ``HAMMING`` metric, ``BIN_FLAT`` or ``BIN_IVF_FLAT``.

For galleries past one machine: the codes live in a Milvus collection (fields
``id`` INT64 primary key = gallery id, ``code`` BINARY_VECTOR of ``8 * ceil(bits / 8)``
dimensions), reached through ``uri`` (``http://127.0.0.1:19530`` for a local
server, a cluster's address otherwise: the same code). The gallery directory keeps
its own copy of the codes (``codes.npy``), so a gallery moves between Milvus and
the faiss backends without the images (``fusnet index convert``).

Hits come back sorted by (distance, id). Milvus does not order equally distant
codes by id, so when several codes tie at the k-th distance, which of them are
returned may differ from the faiss flat index's (ties by id).

A search sees the gallery's snapshot (``fusnet.index.layout``): it asks only for ids
below the snapshot's count, so rows that an add is inserting, or that a killed add left,
stay out of its answers until ``gallery.json`` publishes them (the next add drops the
rows of a killed one).

Needs ``pymilvus`` (``pip install 'fusnet[milvus]'``) and a running Milvus (2.3 or
later). A server with authentication gets its ``user:password`` from the environment
variable ``FUSNET_MILVUS_TOKEN``, never from the gallery's files. The tests start the
embedded server of the ``milvus`` package, with authentication (README: what it leaves
open).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from fusnet.errors import ConfigError, DataError
from fusnet.index.backends import DEFAULT_NPROBE, sort_hits

logger = logging.getLogger(__name__)

INDEX_TYPES: tuple[str, ...] = ("BIN_FLAT", "BIN_IVF_FLAT")
MAX_K = 16384
"""Milvus's largest ``limit`` of one search."""
_INSERT_BATCH = 20_000
TOKEN_ENV = "FUSNET_MILVUS_TOKEN"


def default_collection(directory: Path) -> str:
    """A collection name for a gallery directory: ``fusnet_`` and a hash of its absolute path."""
    return "fusnet_" + hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]


def _client(uri: str) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise ConfigError(
            "the milvus index kind needs pymilvus: pip install 'fusnet[milvus]'"
        ) from exc
    try:
        return MilvusClient(uri=uri, token=os.environ.get(TOKEN_ENV, ""))
    except Exception as exc:  # pymilvus raises its own MilvusException and grpc errors
        raise DataError(
            f"cannot reach Milvus at {uri}: {exc}; start the server or fix --uri (a server with "
            f"authentication: set {TOKEN_ENV}=user:password)"
        ) from exc


class MilvusBackend:
    """A Milvus collection of packed codes (use :meth:`prepare` then :meth:`connect`).

    Args:
        client: a ``pymilvus.MilvusClient``.
        spec: ``gallery.json``'s ``index`` (uri, collection, index_type, nlist, nprobe).
        bits: code length.
    """

    kind = "milvus"

    def __init__(self, client: Any, spec: dict[str, Any], bits: int) -> None:
        self.client = client
        self.spec = dict(spec)
        self.collection: str = spec["collection"]
        self.nbytes = (bits + 7) // 8
        self._ntotal = 0

    @classmethod
    def prepare(cls, spec: dict[str, Any], overwrite: bool) -> None:
        """Check a new gallery's collection is free (drop it with ``overwrite``)."""
        if spec.get("index_type") not in INDEX_TYPES:
            raise ConfigError(f"Milvus index_type must be one of {INDEX_TYPES}, got {spec.get('index_type')!r}")
        client = _client(spec["uri"])
        if client.has_collection(spec["collection"]):
            if not overwrite:
                raise DataError(
                    f"Milvus at {spec['uri']} already has a collection {spec['collection']!r}: "
                    "choose another --collection, or pass --overwrite to replace it"
                )
            client.drop_collection(spec["collection"])

    @classmethod
    def connect(cls, spec: dict[str, Any], bits: int, count: int, repair: bool = False) -> MilvusBackend:
        """The gallery's collection, created when the gallery is still empty.

        Args:
            spec: the index spec.
            bits: code length.
            count: the snapshot's count: searches see ids below it.
            repair: delete rows with ids >= count (left by an interrupted commit): writers only.
        """
        backend = cls(_client(spec["uri"]), spec, bits)
        if not backend.client.has_collection(backend.collection):
            if count:
                raise DataError(
                    f"Milvus at {spec['uri']} has no collection {backend.collection!r} but the gallery "
                    f"holds {count} codes: move it there again with `fusnet index convert`"
                )
            backend._create()
        if repair:
            backend.client.delete(backend.collection, filter=f"id >= {count}")
        stored = backend._count()
        backend._ntotal = stored if repair else min(stored, count)  # a reader ignores rows past count
        return backend

    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("code", DataType.BINARY_VECTOR, dim=8 * self.nbytes)
        params = self.client.prepare_index_params()
        extra = {"nlist": int(self.spec["nlist"])} if self.spec["index_type"] == "BIN_IVF_FLAT" else {}
        params.add_index(field_name="code", index_type=self.spec["index_type"], metric_type="HAMMING",
                         params=extra)
        self.client.create_collection(self.collection, schema=schema, index_params=params,
                                      consistency_level="Strong")
        self.client.load_collection(self.collection)
        logger.info("created Milvus collection %s (%s, %d bits)", self.collection,
                    self.spec["index_type"], 8 * self.nbytes)

    def _count(self) -> int:
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"],
                                 consistency_level="Strong")
        return int(rows[0]["count(*)"])

    @property
    def ntotal(self) -> int:
        return self._ntotal

    def add(self, packed: np.ndarray) -> None:
        """Insert codes with ids continuing from ``ntotal``."""
        for s in range(0, len(packed), _INSERT_BATCH):
            part = packed[s : s + _INSERT_BATCH]
            rows = [{"id": self._ntotal + s + i, "code": row.tobytes()} for i, row in enumerate(part)]
            self.client.insert(self.collection, rows)
        self._ntotal += len(packed)

    def search(self, packed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self._ntotal)
        if k > MAX_K:
            raise ConfigError(f"Milvus returns at most {MAX_K} hits a query, asked for {k}")
        params: dict[str, Any] = {"metric_type": "HAMMING"}
        if self.spec["index_type"] == "BIN_IVF_FLAT":
            params["params"] = {"nprobe": int(self.spec.get("nprobe") or DEFAULT_NPROBE)}
        results = self.client.search(self.collection, data=[row.tobytes() for row in packed], limit=k,
                                     filter=f"id < {self._ntotal}", search_params=params,
                                     consistency_level="Strong")
        distances = np.full((len(packed), k), np.iinfo(np.int32).max, np.int32)
        ids = np.full((len(packed), k), -1, np.int64)
        for q, hits in enumerate(results):
            for j, hit in enumerate(hits):
                distances[q, j], ids[q, j] = round(hit["distance"]), hit["id"]
        return sort_hits(distances, ids)

    def save(self, directory: Path) -> None:
        """Nothing to write: the server keeps the collection."""

    def describe(self) -> dict[str, Any]:
        return dict(self.spec)


def milvus_spec(directory: Path, uri: str | None, collection: str | None, nlist: int | None,
                nprobe: int | None) -> dict[str, Any]:
    """The index spec of a Milvus gallery: ``BIN_IVF_FLAT`` with ``nlist``, else ``BIN_FLAT``."""
    if not uri:
        raise ConfigError("the milvus index kind needs --uri (e.g. http://127.0.0.1:19530)")
    return {"kind": "milvus", "uri": uri, "collection": collection or default_collection(directory),
            "index_type": "BIN_IVF_FLAT" if nlist else "BIN_FLAT", "nlist": nlist, "nprobe": nprobe}
