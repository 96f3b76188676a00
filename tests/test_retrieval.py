"""fusnet.eval.retrieval: packing, popcount distances, exact top-k with ties by index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusnet.eval import retrieval
from fusnet.eval.retrieval import (
    HammingIndex,
    hamming_distance,
    hamming_topk,
    pack_codes,
    unpack_codes,
)


def random_packed(rng, n, bits, distinct=None):
    """Packed random codes; with ``distinct`` only that many different codes (many ties)."""
    codes = rng.choice([-1.0, 1.0], size=(distinct or n, bits))
    if distinct:
        codes = codes[rng.integers(0, distinct, n)]
    return pack_codes(codes)


def reference_topk(query_packed, db_packed, bits, k):
    """Unpack, count differing bits, stable argsort: ties by index by construction."""
    q = unpack_codes(query_packed, bits)
    d = unpack_codes(db_packed, bits)
    dist = (q[:, None, :] != d[None, :, :]).sum(-1)
    idx = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, idx, axis=1), idx


# --- packing ---------------------------------------------------------------------------------


def test_pack_codes_convention():
    codes = np.array([[1, -1, -1, -1, -1, -1, -1, -1, 1], [-1, 1, -1, -1, -1, -1, -1, 1, -1]])
    packed = pack_codes(codes)
    assert packed.dtype == np.uint8
    assert packed.shape == (2, 2)
    # first dimension = most significant bit of byte 0; the last byte zero-padded
    np.testing.assert_array_equal(packed, [[0b10000000, 0b10000000], [0b01000001, 0]])


@pytest.mark.parametrize("bits", [1, 7, 8, 12, 48, 64, 65, 130])
def test_pack_unpack_round_trip(bits):
    rng = np.random.default_rng(bits)
    codes = rng.choice([-1.0, 1.0], size=(9, bits)).astype(np.float32)
    packed = pack_codes(torch.from_numpy(codes))
    assert packed.shape == (9, (bits + 7) // 8)
    back = unpack_codes(packed, bits)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, codes)


def test_pack_thresholds_real_values_at_zero():
    np.testing.assert_array_equal(
        pack_codes(np.array([[0.3, -2.0, 0.0, 5.0]])), pack_codes(np.array([[1, -1, -1, 1]]))
    )


def test_unpack_rejects_wrong_width():
    with pytest.raises(ValueError, match="pack into 2 bytes"):
        unpack_codes(np.zeros((1, 1), np.uint8), 12)
    with pytest.raises(ValueError, match="uint8"):
        unpack_codes(np.zeros((1, 2), np.int64), 12)


# --- distances -------------------------------------------------------------------------------


def test_hamming_distance_hand_case():
    q = pack_codes(np.array([[1, 1, 1, 1]]))
    d = pack_codes(np.array([[1, 1, 1, 1], [-1, -1, -1, -1], [1, -1, 1, -1]]))
    np.testing.assert_array_equal(hamming_distance(q, d), [[0, 4, 2]])


@pytest.mark.parametrize("bits", [5, 48, 64, 130, 300])
def test_hamming_distance_matches_inner_products(bits):
    rng = np.random.default_rng(bits)
    q = rng.choice([-1.0, 1.0], size=(11, bits))
    d = rng.choice([-1.0, 1.0], size=(37, bits))
    dist = hamming_distance(pack_codes(q), pack_codes(d), chunk_size=4)
    assert dist.dtype == np.int32
    np.testing.assert_array_equal(dist, ((bits - q @ d.T) / 2).astype(np.int32))


# --- top-k -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bits", "n", "distinct", "k"),
    [
        (4, 3000, None, 100),  # 16 possible codes: every distance ties hundreds of items
        (12, 20000, 50, 700),  # 50 distinct codes repeated: ties inside the top-k
        (48, 5000, None, 1),
        (7, 100, None, 100),  # k = N
        (130, 3000, 40, 50),  # three 64-bit words
    ],
)
def test_topk_matches_reference_on_ties(bits, n, distinct, k):
    rng = np.random.default_rng(n + bits)
    db = random_packed(rng, n, bits, distinct)
    q = random_packed(rng, 23, bits)
    expected = reference_topk(q, db, bits, k)
    for chunk in (None, 1, 5):
        dist, idx = hamming_topk(q, db, k, chunk_size=chunk)
        assert dist.dtype == np.int32
        assert idx.dtype == np.int64
        np.testing.assert_array_equal(dist, expected[0])
        np.testing.assert_array_equal(idx, expected[1])


def test_topk_merges_many_candidates(monkeypatch):
    # tiny blocks: the threshold filter and the merge run many times
    monkeypatch.setattr(retrieval.topk, "_TOPK_BLOCK", 16)
    rng = np.random.default_rng(1)
    db = random_packed(rng, 2000, 6)
    q = random_packed(rng, 9, 6)
    dist, idx = hamming_topk(q, db, 40)
    expected = reference_topk(q, db, 6, 40)
    np.testing.assert_array_equal(dist, expected[0])
    np.testing.assert_array_equal(idx, expected[1])


def test_topk_rejects_bad_k():
    db = np.zeros((5, 2), np.uint8)
    with pytest.raises(ValueError, match="between 1 and the database size 5"):
        hamming_topk(db[:1], db, 6)
    with pytest.raises(ValueError, match="code widths differ"):
        hamming_topk(np.zeros((1, 3), np.uint8), db, 1)


# --- the index -------------------------------------------------------------------------------

BACKENDS = ["numpy", pytest.param("faiss", marks=pytest.mark.skipif(
    not retrieval._faiss_available(), reason="faiss not installed"))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("bits", "distinct", "k"), [(12, None, 300), (12, 30, 1000), (48, 200, 64), (64, None, 10), (3, None, 50)]
)
def test_index_matches_reference_on_ties(backend, bits, distinct, k):
    rng = np.random.default_rng(bits + k)
    db = random_packed(rng, 6000, bits, distinct)
    q = random_packed(rng, 20, bits)
    index = HammingIndex(bits, backend=backend)
    index.add(db[:2500])
    index.add(db[2500:])  # indices continue across add() calls
    assert index.ntotal == 6000
    dist, idx = index.search(q, k)
    expected = reference_topk(q, db, bits, k)
    np.testing.assert_array_equal(dist, expected[0])
    np.testing.assert_array_equal(idx, expected[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_index_large_k_heap_path(backend):
    # above k = 4096 faiss switches from its counting k-NN to its heap k-NN
    rng = np.random.default_rng(2)
    db = random_packed(rng, 9000, 12, distinct=60)
    q = random_packed(rng, 3, 12)
    index = HammingIndex(12, backend=backend)
    index.add(db)
    dist, idx = index.search(q, 5000)
    expected = reference_topk(q, db, 12, 5000)
    np.testing.assert_array_equal(dist, expected[0])
    np.testing.assert_array_equal(idx, expected[1])


def test_index_auto_agrees_with_numpy_and_reset():
    rng = np.random.default_rng(3)
    db = random_packed(rng, 1000, 48, distinct=20)
    q = random_packed(rng, 5, 48)
    auto, plain = HammingIndex(48), HammingIndex(48, backend="numpy")
    for index in (auto, plain):
        index.add(db)
    for a, b in zip(auto.search(q, 30), plain.search(q, 30), strict=True):
        np.testing.assert_array_equal(a, b)
    auto.reset()
    assert auto.ntotal == 0
    auto.add(db[:10])
    assert auto.search(q, 10)[1].max() < 10


def test_index_rejects_bad_input():
    with pytest.raises(ValueError, match="backend"):
        HammingIndex(12, backend="gpu")
    index = HammingIndex(12, backend="numpy")
    with pytest.raises(ValueError, match="take 2 bytes"):
        index.add(np.zeros((3, 3), np.uint8))
    index.add(np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match="between 1 and the database size 3"):
        index.search(np.zeros((1, 2), np.uint8), 4)


@pytest.mark.skipif(not retrieval._faiss_available(), reason="faiss not installed")
def test_faiss_search_in_parts_leaves_caller_threads(monkeypatch):
    import faiss

    monkeypatch.setattr(retrieval.hamming_index, "_FAISS_PART", 3)  # many parts on worker threads
    rng = np.random.default_rng(4)
    db = random_packed(rng, 3000, 12, distinct=25)
    q = random_packed(rng, 41, 12)
    before = faiss.omp_get_max_threads()
    index = HammingIndex(12, backend="faiss")
    index.add(db)
    dist, idx = index.search(q, 200)
    expected = reference_topk(q, db, 12, 200)
    np.testing.assert_array_equal(dist, expected[0])
    np.testing.assert_array_equal(idx, expected[1])
    assert faiss.omp_get_max_threads() == before
