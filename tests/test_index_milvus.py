"""The Milvus gallery backend against a real Milvus server on loopback (the ``milvus`` package).

The session fixture starts the embedded Milvus 2.3 standalone server that the ``milvus``
package ships (15-60 s) and stops it at the end. Every component is told to use
127.0.0.1 and the tests connect there; the server's own gRPC ports still listen on all
interfaces (its etcd on loopback only), which the package gives no setting to change.
"""

from __future__ import annotations

import numpy as np
import pytest

from fusnet import index
from fusnet.errors import ConfigError, DataError
from fusnet.eval.retrieval import pack_codes
from fusnet.index.backends import FlatBackend
from fusnet.index.milvus_backend import MilvusBackend
from fusnet.serve.export import export_model
from tests.export_helpers import tiny_run, write_images

pytestmark = pytest.mark.slow

COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode",
              "dataCoord", "dataNode")


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory):
    try:
        import pymilvus  # noqa: F401
        from milvus import MilvusServer
    except ImportError as exc:
        pytest.skip(f"the milvus and pymilvus packages are not installed ({exc}); `make venv` installs them")
    server = MilvusServer()
    server.set_base_dir(str(tmp_path_factory.mktemp("milvus")))
    server.config.extra_configs.update({f"{c}.ip": "127.0.0.1" for c in COMPONENTS})
    try:
        server.start()
    except Exception as exc:
        server.stop()
        pytest.skip(f"the embedded Milvus server of the milvus package cannot start here: {exc}")
    yield f"http://127.0.0.1:{server.listen_port}"
    server.stop()


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


def test_rows_left_by_an_interrupted_commit_are_refused_then_dropped(milvus_uri, photos, tmp_path):
    g = index.build(photos["model"], photos["photos"], tmp_path / "g", kind="milvus", uri=milvus_uri,
                    collection="gallery_stray")
    g.backend.client.insert("gallery_stray", [{"id": 16, "code": g.codes[0].tobytes()}])
    with pytest.raises(DataError, match=r"holds 17 codes but codes\.npy 16"):
        index.search(tmp_path / "g", photos["queries"][0])
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
