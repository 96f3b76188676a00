"""The Milvus gallery backend against a real Milvus server on loopback (the ``milvus`` package).

The session fixture starts the embedded Milvus 2.3 standalone server that the ``milvus``
package ships (15-60 s) and stops it at the end, as safely as Milvus allows: every
component is told to use 127.0.0.1, authentication is on and the root password is
replaced at once by a random one (``FUSNET_MILVUS_TOKEN``). Milvus 2.3.5 gives its gRPC and
metrics servers no listen address: they still listen on all interfaces (its etcd on
loopback only), which ``test_the_embedded_server_asks_for_a_password_and_where_it_listens``
records (README: keep such a server off untrusted networks).
"""

from __future__ import annotations

import os
import secrets
import types

import numpy as np
import psutil
import pytest

from fusnet import index
from fusnet.errors import ConfigError, DataError
from fusnet.eval.retrieval import pack_codes
from fusnet.index.backends import FlatBackend
from fusnet.index.milvus_backend import TOKEN_ENV, MilvusBackend, _client
from fusnet.serve.export import export_model
from tests.export_helpers import tiny_run, write_images

pytestmark = pytest.mark.slow

COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode",
              "dataCoord", "dataNode")


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """The embedded server on 127.0.0.1 with a random root password (in ``FUSNET_MILVUS_TOKEN``)."""
    try:
        from milvus import MilvusServer
        from pymilvus import MilvusClient
    except ImportError as exc:
        pytest.skip(f"the milvus and pymilvus packages are not installed ({exc}); `make venv` installs them")
    server = MilvusServer()
    server.set_base_dir(str(tmp_path_factory.mktemp("milvus")))
    server.config.extra_configs.update({f"{c}.ip": "127.0.0.1" for c in COMPONENTS})
    server.config.set("authorization_enabled", True)  # clients need a user and password
    try:
        server.start()
    except Exception as exc:
        server.stop()
        pytest.skip(f"the embedded Milvus server of the milvus package cannot start here: {exc}")
    uri = f"http://127.0.0.1:{server.listen_port}"
    password = secrets.token_urlsafe(18)
    MilvusClient(uri=uri, token="root:Milvus").update_password("root", "Milvus", password)  # the default
    saved = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = f"root:{password}"
    yield types.SimpleNamespace(uri=uri, pid=server.server_proc.pid, port=server.listen_port)
    server.stop()
    if saved is None:
        del os.environ[TOKEN_ENV]
    else:
        os.environ[TOKEN_ENV] = saved


@pytest.fixture(scope="session")
def milvus_uri(milvus_server) -> str:
    return milvus_server.uri


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("milvus_gallery")
    model_file = export_model(tiny_run(root / "run"), root / "model.fusnet")
    write_images(root / "photos", 16, seed=1)
    more = write_images(root / "more", 5, seed=4)
    return {"model": model_file, "photos": root / "photos", "more": root / "more", "queries": more}


def _spec(uri: str, name: str, index_type: str = "BIN_FLAT", nlist: int | None = None) -> dict:
    return {"kind": "milvus", "uri": uri, "collection": name, "index_type": index_type,
            "nlist": nlist, "nprobe": nlist}


def test_milvus_returns_the_faiss_hits_on_codes_whose_distances_do_not_tie(milvus_uri):
    rng = np.random.default_rng(0)
    query = rng.random(64) < 0.5  # (64,)
    flips = np.tril(np.ones((64, 64), bool), -1)  # row i flips the first i bits: distance i
    db = pack_codes(np.where(query ^ flips[rng.permutation(64)], 1.0, -1.0))  # (64, 8)
    queries = pack_codes(np.where(np.stack([query, ~query]), 1.0, -1.0))  # distances i and 64 - i
    flat = FlatBackend(64)
    flat.add(db)
    for name, index_type, nlist in (("untied_flat", "BIN_FLAT", None), ("untied_ivf", "BIN_IVF_FLAT", 4)):
        spec = _spec(milvus_uri, name, index_type, nlist)
        MilvusBackend.prepare(spec, overwrite=True)
        backend = MilvusBackend.connect(spec, 64, count=0)
        backend.add(db[:40])
        backend.add(db[40:])
        assert backend.ntotal == 64
        for k in (10, 64):
            d_milvus, i_milvus = backend.search(queries, k)
            d_faiss, i_faiss = flat.search(queries, k)
            np.testing.assert_array_equal(d_milvus, d_faiss)
            np.testing.assert_array_equal(i_milvus, i_faiss)
        assert d_milvus[0].tolist() == list(range(64))


def test_milvus_gallery_builds_adds_searches_and_moves_to_faiss_and_back(milvus_uri, photos, tmp_path):
    index.build(photos["model"], photos["photos"], tmp_path / "flat")
    flat = index.add(tmp_path / "flat", photos["more"])
    g = index.build(photos["model"], photos["photos"], tmp_path / "m", kind="milvus", uri=milvus_uri,
                    collection="gallery_m")
    assert g.meta["index"]["collection"] == "gallery_m" and g.backend.ntotal == 16
    g = index.add(tmp_path / "m", photos["more"])
    assert g.count == 21 and g.backend.ntotal == 21
    np.testing.assert_array_equal(g.codes, flat.codes)
    query = photos["queries"][1]
    exact = index.search(tmp_path / "flat", query, k=21)[0]  # every image: sorted by (distance, id)
    assert index.search(tmp_path / "m", query, k=21)[0] == exact
    top = index.search(tmp_path / "m", query, k=5)[0]
    assert [h.distance for h in top] == [h.distance for h in exact[:5]]
    # moved to faiss and back to Milvus, nothing re-encoded
    assert index.convert(tmp_path / "m", "flat").meta["index"] == {"kind": "flat"}
    assert index.search(tmp_path / "m", query, k=21)[0] == exact
    moved = index.convert(tmp_path / "flat", "milvus", uri=milvus_uri, collection="moved_ivf", nlist=2,
                          nprobe=2)
    assert moved.meta["index"]["index_type"] == "BIN_IVF_FLAT" and moved.backend.ntotal == 21
    assert index.search(tmp_path / "flat", query, k=21)[0] == exact


def test_rows_past_the_snapshot_are_not_searched_then_dropped(milvus_uri, photos, tmp_path):
    g = index.build(photos["model"], photos["photos"], tmp_path / "g", kind="milvus", uri=milvus_uri,
                    collection="gallery_stray")
    g.backend.client.insert("gallery_stray", [{"id": 16, "code": g.codes[0].tobytes()}])
    # an add in progress (or killed) inserted it: searches answer from the 16 published
    # rows (issue 31: they used to be refused)
    assert sorted(h.id for h in index.search(tmp_path / "g", photos["queries"][0], k=21)[0]) == list(range(16))
    g.backend.client.delete("gallery_stray", filter="id < 16")
    with pytest.raises(DataError, match=r"holds 1 codes but codes\.npy 16"):  # published rows lost
        index.search(tmp_path / "g", photos["queries"][0])
    g.backend.client.insert("gallery_stray", [{"id": i, "code": c.tobytes()} for i, c in enumerate(g.codes)])
    g = index.add(tmp_path / "g", photos["more"])  # the commit drops ids >= 16 first
    assert g.count == g.backend.ntotal == 21
    assert sorted(h.id for h in index.search(tmp_path / "g", photos["queries"][0], k=21)[0]) == list(range(21))


def test_milvus_bad_input_is_a_clear_error(milvus_uri, photos, tmp_path):
    index.build(photos["model"], photos["more"], tmp_path / "a", kind="milvus", uri=milvus_uri,
                collection="taken")
    with pytest.raises(DataError, match="already has a collection 'taken'"):
        index.build(photos["model"], photos["more"], tmp_path / "b", kind="milvus", uri=milvus_uri,
                    collection="taken")
    with pytest.raises(ConfigError, match="needs --uri"):
        index.build(photos["model"], photos["more"], tmp_path / "c", kind="milvus")
    with pytest.raises(DataError, match=r"cannot reach Milvus at http://127\.0\.0\.1:9"):
        index.build(photos["model"], photos["more"], tmp_path / "d", kind="milvus",
                    uri="http://127.0.0.1:9")


def test_the_embedded_server_asks_for_a_password_and_where_it_listens(milvus_server, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(DataError, match=f"(?s)cannot reach Milvus .* set {TOKEN_ENV}=user:password"):
        _client(milvus_server.uri)
    listening = {c.laddr.port: c.laddr.ip for c in psutil.Process(milvus_server.pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN}
    assert listening[2379] == listening[2380] == "127.0.0.1"  # etcd
    # Milvus 2.3.5 binds its client port (and the others) to every interface whatever its
    # config says; if this fails, it no longer does: update the README's Milvus paragraph
    assert listening[milvus_server.port] in ("::", "0.0.0.0")
