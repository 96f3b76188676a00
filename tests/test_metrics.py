"""fusnet.eval.metrics against hand-computed values and brute-force references.

The references are deliberately naive: one stable argsort per query for ties
by index, and exhaustive enumeration of every order of the tied items for the
tie-aware expectation.
"""

from __future__ import annotations

import itertools
import json
import logging
import math

import numpy as np
import pytest
import torch

from fusnet.eval.metrics import (
    _chunk_tasks,
    _counting,
    _tie_aware,
    evaluate_retrieval,
    mean_average_precision,
    precision_at_k,
    precision_recall_by_radius,
    recall_at_k,
)
from fusnet.eval.metrics._counting import _retrieval_stats
from fusnet.eval.metrics._tie_aware import _tie_aware_ap

# --- references ------------------------------------------------------------------------------


def relevance(ql: np.ndarray, dl: np.ndarray) -> np.ndarray:
    if ql.ndim == 1:
        return ql[:, None] == dl[None, :]
    return (ql @ dl.T) > 0


def hamming(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    return ((q.shape[1] - q @ d.T) / 2).astype(np.int64)


def ap_of_ranking(rel_sorted: np.ndarray, k: int) -> float:
    """AP@k of one ranking (public convention: normalised by relevant within top k)."""
    top = rel_sorted[:k]
    num = int(top.sum())
    if num == 0:
        return 0.0
    pos = np.flatnonzero(top) + 1
    return float(np.mean(np.arange(1, num + 1) / pos))


def ref_index_ap(q, d, ql, dl, topk=None) -> np.ndarray:
    dist, rel = hamming(q, d), relevance(ql, dl)
    k = len(d) if topk is None else min(topk, len(d))
    return np.array(
        [ap_of_ranking(rel[i][np.argsort(dist[i], kind="stable")], k) for i in range(len(q))]
    )


def ref_tie_ap_permutations(q, d, ql, dl, topk=None) -> np.ndarray:
    """Mean AP over every permutation of every tie group (tiny cases only)."""
    dist, rel = hamming(q, d), relevance(ql, dl)
    k = len(d) if topk is None else min(topk, len(d))
    out = []
    for i in range(len(q)):
        groups = [np.flatnonzero(dist[i] == v) for v in np.unique(dist[i])]
        values = [
            ap_of_ranking(rel[i][np.concatenate(order)], k)
            for order in itertools.product(*(itertools.permutations(g) for g in groups))
        ]
        out.append(np.mean(values))
    return np.array(out)


def ref_tie_ap_arrangements(dist_row, rel_row, k) -> float:
    """Mean AP over every placement of the relevant items inside each tie block.

    Each placement stands for the same number of permutations, so this equals the
    permutation average; it reaches larger blocks than enumerating permutations.
    """
    blocks = [(int((dist_row == v).sum()), int(rel_row[dist_row == v].sum())) for v in np.unique(dist_row)]
    total, count = 0.0, 0
    for choice in itertools.product(*(itertools.combinations(range(n), r) for n, r in blocks)):
        seq = []
        for (n, _), places in zip(blocks, choice, strict=True):
            block = np.zeros(n, bool)
            block[list(places)] = True
            seq.append(block)
        total += ap_of_ranking(np.concatenate(seq), k)
        count += 1
    return total / count


def random_case(rng, nq, n, bits, classes, multi=False):
    q = rng.choice([-1.0, 1.0], size=(nq, bits))
    d = rng.choice([-1.0, 1.0], size=(n, bits))
    if multi:
        ql = (rng.random((nq, classes)) < 0.4).astype(np.float32)
        dl = (rng.random((n, classes)) < 0.4).astype(np.float32)
    else:
        ql = rng.integers(0, classes, nq)
        dl = rng.integers(0, classes, n)
    return q, d, ql, dl


# --- hand-computed cases ---------------------------------------------------------------------

# query (+1,+1); database distances 0, 2, 1, 0; relevant: items 0 and 1.
HAND_Q = np.array([[1.0, 1.0]])
HAND_D = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [1.0, 1.0]])
HAND_QL = np.array([0])
HAND_DL = np.array([0, 0, 1, 1])


def test_hand_case_index_ties():
    # ranking by (distance, index): 0 (rel), 3, 2, 1 (rel) -> AP = (1/1 + 2/4) / 2
    assert mean_average_precision(HAND_Q, HAND_D, HAND_QL, HAND_DL) == pytest.approx(0.75)
    assert mean_average_precision(HAND_Q, HAND_D, HAND_QL, HAND_DL, topk=2) == pytest.approx(1.0)
    assert mean_average_precision(HAND_Q, HAND_D, HAND_QL, HAND_DL, topk=1) == pytest.approx(1.0)


def test_hand_case_tie_aware():
    # block {0 (rel), 3} in random order: first relevant has expected precision (1 + 1/2)/2;
    # the second is always 4th with rank 2.
    full = mean_average_precision(HAND_Q, HAND_D, HAND_QL, HAND_DL, ties="average")
    assert full == pytest.approx((0.75 + 0.5) / 2)
    # @2: the block is inside the cut; one relevant retrieved -> 0.75
    at2 = mean_average_precision(HAND_Q, HAND_D, HAND_QL, HAND_DL, topk=2, ties="average")
    assert at2 == pytest.approx(0.75)
    # @1: the block straddles the cut; the relevant item is above it half of the time
    at1 = mean_average_precision(HAND_Q, HAND_D, HAND_QL, HAND_DL, topk=1, ties="average")
    assert at1 == pytest.approx(0.5)


def test_tie_aware_is_not_precision_of_the_block():
    # three tied items, two relevant: orders RRN, RNR, NRR give AP 1, 5/6, 7/12 -> 29/36.
    q = np.array([[1.0]])
    d = np.array([[1.0], [1.0], [1.0]])
    value = mean_average_precision(q, d, np.array([0]), np.array([0, 0, 1]), ties="average")
    assert value == pytest.approx(29 / 36, abs=1e-15)
    # the naive "precision of the block at each relevant item" would give 2/3
    assert value != pytest.approx(2 / 3)


def test_expected_block_sum_closed_form_matches_direct_sum():
    harmonic = _tie_aware._harmonic_table(60)
    for n0, r0, n, r in [(0, 0, 1, 1), (5, 2, 7, 3), (10, 0, 20, 20), (3, 3, 9, 1), (0, 0, 4, 0)]:
        b = (r - 1) / (n - 1) if n > 1 else 0.0
        direct = sum((r / n) * (r0 + 1 + (t - 1) * b) / (n0 + t) for t in range(1, n + 1))
        got = _tie_aware._expected_block_sum(
            np.array(r0), np.array(n0), np.array(n), np.array(r), harmonic
        )
        assert float(got) == pytest.approx(direct if r else 0.0, rel=1e-13, abs=1e-15)


def test_no_ties_both_conventions_agree():
    # 3-bit codes, distinct distances 0..3 from the query
    q = np.array([[1.0, 1.0, 1.0]])
    d = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [1.0, 1.0, -1.0]])
    ql, dl = np.array([1]), np.array([1, 0, 1, 0])
    # ranking 1, 3, 2 (rel), 0 (rel): AP = (1/3 + 2/4) / 2
    expected = (1 / 3 + 2 / 4) / 2
    assert mean_average_precision(q, d, ql, dl) == pytest.approx(expected)
    assert mean_average_precision(q, d, ql, dl, ties="average") == pytest.approx(expected)


# --- brute force -----------------------------------------------------------------------------


@pytest.mark.parametrize("multi", [False, True])
def test_tiny_cases_against_permutation_enumeration(multi):
    rng = np.random.default_rng(0 if multi else 1)
    checked = 0
    for _ in range(120):
        bits, n, nq = int(rng.integers(1, 4)), int(rng.integers(1, 8)), int(rng.integers(1, 3))
        q, d, ql, dl = random_case(rng, nq, n, bits, 3, multi)
        for topk in (None, int(rng.integers(1, n + 2))):
            methods = ("sort",) if multi else ("histogram", "sort")
            expected_index = ref_index_ap(q, d, ql, dl, topk)
            expected_tie = ref_tie_ap_permutations(q, d, ql, dl, topk)
            for method in methods:
                stats = _retrieval_stats(q, d, ql, dl, topk=topk, method=method)
                np.testing.assert_allclose(stats.ap_index, expected_index, rtol=0, atol=1e-12)
                np.testing.assert_allclose(_tie_aware_ap(stats), expected_tie, rtol=0, atol=1e-12)
                checked += 1
    assert checked > 200


def test_straddling_blocks_against_arrangement_enumeration():
    rng = np.random.default_rng(2)
    checked = 0
    while checked < 60:
        bits, n = int(rng.integers(1, 4)), int(rng.integers(4, 16))
        q, d, _, dl = random_case(rng, 1, n, bits, 2)
        dist, rel = hamming(q, d)[0], dl == 0
        blocks = [(int((dist == v).sum()), int(rel[dist == v].sum())) for v in np.unique(dist)]
        if math.prod(math.comb(a, b) for a, b in blocks) > 5000:
            continue
        topk = int(rng.integers(1, n + 1))
        stats = _retrieval_stats(q, d, np.array([0]), dl, topk=topk)
        expected = ref_tie_ap_arrangements(dist, rel, topk)
        assert _tie_aware_ap(stats)[0] == pytest.approx(expected, abs=1e-12)
        checked += 1


@pytest.mark.parametrize(
    ("bits", "n", "nq", "classes"), [(4, 400, 40, 5), (3, 257, 30, 2), (12, 600, 25, 30)]
)
@pytest.mark.parametrize("topk", [None, 1, 7, 100, 10_000])
def test_index_ties_many_ties_against_stable_argsort(bits, n, nq, classes, topk):
    rng = np.random.default_rng(bits * 1000 + n)
    q, d, ql, dl = random_case(rng, nq, n, bits, classes)
    ql[0] = classes + 3  # a query with no relevant item
    expected = ref_index_ap(q, d, ql, dl, topk)
    for method in ("histogram", "sort"):
        for chunk in (None, 1, 7):
            stats = _retrieval_stats(q, d, ql, dl, topk=topk, chunk_size=chunk, method=method)
            np.testing.assert_allclose(stats.ap_index, expected, rtol=0, atol=1e-12)
    value = mean_average_precision(q, d, ql, dl, topk=topk)
    assert value == pytest.approx(expected.mean(), abs=1e-12)


def test_multi_hot_against_stable_argsort():
    rng = np.random.default_rng(3)
    q, d, ql, dl = random_case(rng, 30, 300, 4, 4, multi=True)
    ql[0] = 0  # no label at all: no relevant item
    for topk in (None, 10):
        expected = ref_index_ap(q, d, ql, dl, topk)
        got = _retrieval_stats(q, d, ql, dl, topk=topk, chunk_size=4).ap_index
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_histogram_float64_path(monkeypatch):
    # a small exactness threshold forces the float64 matrix product
    monkeypatch.setattr(_chunk_tasks, "_FLOAT32_EXACT", 8)
    rng = np.random.default_rng(4)
    q, d, ql, dl = random_case(rng, 12, 200, 6, 3)
    expected = ref_index_ap(q, d, ql, dl)
    got = _retrieval_stats(q, d, ql, dl, method="histogram").ap_index
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_auto_switches_to_sort_for_huge_classes(monkeypatch):
    monkeypatch.setattr(_counting, "_HIST_FACTOR", 0)
    rng = np.random.default_rng(5)
    q, d, ql, dl = random_case(rng, 20, 150, 4, 3)
    called = []
    original = _counting._sort_task
    monkeypatch.setattr(_counting, "_sort_task", lambda *a: called.append(1) or original(*a))
    got = _retrieval_stats(q, d, ql, dl).ap_index
    assert called
    np.testing.assert_allclose(got, ref_index_ap(q, d, ql, dl), rtol=0, atol=1e-12)


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(6)
    q, d, ql, dl = random_case(rng, 50, 300, 4, 4)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = evaluate_retrieval(q, d, ql, dl, ks=(5,), per_query=True)
        torch.set_num_threads(2)
        two = evaluate_retrieval(q, d, ql, dl, ks=(5,), per_query=True, chunk_size=3)
    finally:
        torch.set_num_threads(previous)
    assert one.keys() == two.keys()
    for key, value in one.items():
        if isinstance(value, float | list):  # summation order may differ in the last bits
            assert value == pytest.approx(two[key], rel=1e-12, abs=1e-15), key
        else:
            assert value == two[key], key
    assert torch.get_num_threads() == previous


# --- precision / recall ----------------------------------------------------------------------


def test_precision_recall_at_k_against_reference():
    rng = np.random.default_rng(7)
    q, d, ql, dl = random_case(rng, 30, 200, 4, 4)
    dist, rel = hamming(q, d), relevance(ql, dl)
    for k in (1, 13, 200, 500):
        kk = min(k, len(d))
        hits = np.array(
            [rel[i][np.argsort(dist[i], kind="stable")][:kk].sum() for i in range(len(q))]
        )
        num_rel = rel.sum(1)
        recall = np.divide(hits, num_rel, out=np.zeros(len(q)), where=num_rel > 0)
        assert precision_at_k(q, d, ql, dl, k) == pytest.approx((hits / kk).mean())
        assert recall_at_k(q, d, ql, dl, k) == pytest.approx(recall.mean())


def test_tie_aware_precision_at_k_against_enumeration():
    # distances 0, 0, 0, 1; relevant 0 and 1; top-2 holds 2 of the 3 tied items
    q = np.array([[1.0]])
    d = np.array([[1.0], [1.0], [1.0], [-1.0]])
    ql, dl = np.array([0]), np.array([0, 0, 1, 1])
    # E[relevant among 2 of {R, R, N}] = 2 * 2/3
    assert precision_at_k(q, d, ql, dl, 2, ties="average") == pytest.approx(2 / 3)
    assert recall_at_k(q, d, ql, dl, 2, ties="average") == pytest.approx(2 / 3)
    assert precision_at_k(q, d, ql, dl, 2) == pytest.approx(1.0)


def test_precision_recall_by_radius_against_reference():
    rng = np.random.default_rng(8)
    q, d, ql, dl = random_case(rng, 25, 150, 5, 3)
    ql[0] = 9  # no relevant item
    dist, rel = hamming(q, d), relevance(ql, dl)
    curve = precision_recall_by_radius(q, d, ql, dl)
    for r in range(6):
        inside = dist <= r
        got = inside.sum(1)
        hit = (inside & rel).sum(1)
        prec = np.divide(hit, got, out=np.zeros(len(q)), where=got > 0)
        rec = np.divide(hit, rel.sum(1), out=np.zeros(len(q)), where=rel.sum(1) > 0)
        assert curve.precision[r] == pytest.approx(prec.mean())
        assert curve.recall[r] == pytest.approx(rec.mean())
        assert curve.fraction_empty[r] == pytest.approx((got == 0).mean())
    assert curve.recall[-1] == pytest.approx((rel.sum(1) > 0).mean())
    np.testing.assert_array_equal(curve.radius, np.arange(6))


# --- the record, inputs, warnings ------------------------------------------------------------


def test_evaluate_retrieval_record(caplog):
    rng = np.random.default_rng(9)
    q, d, ql, dl = random_case(rng, 20, 100, 4, 3)
    ql[:3] = 7
    with caplog.at_level(logging.WARNING, logger="fusnet.eval.metrics"):
        record = evaluate_retrieval(q, d, ql, dl, ks=(1, 10, 1000))
    assert "3 of 20 queries have no relevant" in caplog.text
    json.dumps(record)  # JSON-ready
    assert record["num_queries"] == 20
    assert record["num_database"] == 100
    assert record["num_queries_without_relevant"] == 3
    assert record["bits"] == 4
    assert record["map"] == pytest.approx(ref_index_ap(q, d, ql, dl).mean())
    assert record["map_tie_aware"] == pytest.approx(
        mean_average_precision(q, d, ql, dl, ties="average")
    )
    for k in (1, 10, 1000):
        assert record[f"precision@{k}"] == pytest.approx(precision_at_k(q, d, ql, dl, k))
        assert record[f"recall@{k}"] == pytest.approx(recall_at_k(q, d, ql, dl, k))
    assert set(record) >= {"map", "map_tie_aware", "topk", "ties"}


def test_per_query_lists():
    rng = np.random.default_rng(10)
    q, d, ql, dl = random_case(rng, 6, 40, 3, 2)
    record = evaluate_retrieval(q, d, ql, dl, per_query=True, topk=5)
    np.testing.assert_allclose(record["ap"], ref_index_ap(q, d, ql, dl, 5), atol=1e-12)
    assert len(record["ap_tie_aware"]) == 6


def test_inputs_torch_numpy_and_one_hot_agree():
    rng = np.random.default_rng(11)
    q, d, ql, dl = random_case(rng, 15, 80, 4, 3)
    base = mean_average_precision(q, d, ql, dl)
    assert mean_average_precision(
        torch.from_numpy(q).float(), torch.from_numpy(d), torch.from_numpy(ql), torch.from_numpy(dl)
    ) == pytest.approx(base, abs=1e-15)
    one_hot_q, one_hot_d = np.eye(3)[ql], np.eye(3)[dl]
    assert mean_average_precision(q, d, one_hot_q, one_hot_d) == pytest.approx(base, abs=1e-15)


def test_empty_query_set():
    d = np.ones((3, 2))
    assert mean_average_precision(np.zeros((0, 2)), d, np.zeros(0, int), np.zeros(3, int)) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query_codes": np.array([[0.0, 1.0]])}, "only -1 and \\+1"),
        ({"query_codes": np.ones((1, 3))}, "code lengths differ"),
        ({"query_labels": np.zeros((1, 2))}, "same kind"),
        ({"ties": "random"}, "ties must be"),
        ({"topk": 0}, "topk must be"),
        ({"db_labels": np.zeros(5, int)}, "db_labels must have shape"),
    ],
)
def test_bad_inputs_raise(kwargs, message):
    args = {
        "query_codes": np.ones((1, 2)),
        "db_codes": np.ones((4, 2)),
        "query_labels": np.zeros(1, int),
        "db_labels": np.zeros(4, int),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        mean_average_precision(**args)
