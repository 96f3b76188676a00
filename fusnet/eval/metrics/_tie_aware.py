"""Tie-aware (expected) figures: AP and relevant counts averaged over all tie orders.

The closed forms of McSherry & Najork (ECIR 2008) computed from the per-distance
histograms of :class:`~fusnet.eval.metrics._chunk_tasks._Stats`: the expected precision sum
of a randomly ordered tie block (:func:`_expected_block_sum`), the expected AP or
AP@K with a hypergeometric straddling block (:func:`_tie_aware_ap`), and the
expected relevant items within the first k (:func:`_expected_rel_at_k`).
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma, gammaln

from fusnet.eval.metrics._arrays import _safe_div
from fusnet.eval.metrics._chunk_tasks import _CHUNK_ELEMENTS, _Stats

# Histogram cells per chunk of the tie-aware closed form (cache-sized temporaries).
_TIE_ROWS_CELLS = 1 << 16


def _harmonic_table(n: int) -> np.ndarray:
    """H(i) = sum_{j=1..i} 1/j for i = 0..n (float64, via digamma: no accumulated error)."""
    return digamma(np.arange(n + 1, dtype=np.float64) + 1.0) + np.euler_gamma  # (n+1,)


def _expected_block_sum(
    r0: np.ndarray, n0: np.ndarray, n: np.ndarray, r: np.ndarray, harmonic: np.ndarray
) -> np.ndarray:
    """Expected sum of precisions at the relevant items of a randomly ordered tie block.

    A block of ``n`` tied items, ``r`` of them relevant, follows ``n0`` items of
    which ``r0`` are relevant; its order is a uniform random permutation. The
    relevant item at block position t (1..n) has precision
    ``(r0 + 1 + X_t) / (n0 + t)`` with ``X_t`` the relevant items among the t - 1
    block positions before it. ``P(position t relevant) = r / n`` and, given
    that, ``X_t`` is hypergeometric (t - 1 draws from n - 1 items, r - 1 of them
    relevant) with mean ``(t - 1)(r - 1)/(n - 1)``. As the precision is linear in
    ``X_t``, the expectation is exact::

        E = (r/n) * sum_{t=1..n} (r0 + 1 + (t - 1) b) / (n0 + t),   b = (r-1)/(n-1)
          = (r/n) * (b n + (r0 + 1 - b (n0 + 1)) (H(n0 + n) - H(n0)))

    (b = 0 when n = 1). Note the expected precision at a relevant item is not
    the block's average precision ``(r0 + r)/(n0 + n)``: the expectation of a
    ratio is taken term by term.

    ``r0, n0, n, r`` are broadcastable int64 arrays (n0 + n < len(harmonic), the table of
    :func:`_harmonic_table`); the sum is 0 where n == 0 or r == 0.
    """
    nf, rf = n.astype(np.float64), r.astype(np.float64)
    b = np.where(n > 1, (rf - 1.0) / np.maximum(nf - 1.0, 1.0), 0.0)
    dh = harmonic[n0 + n] - harmonic[n0]
    value = (rf / np.maximum(nf, 1.0)) * (b * nf + (r0 + 1.0 - b * (n0 + 1.0)) * dh)
    return np.where((n > 0) & (r > 0), value, 0.0)


def _tie_aware_ap(stats: _Stats, max_cells: int = _CHUNK_ELEMENTS) -> np.ndarray:
    """Expected AP (or AP@K) over uniformly random orders within every tie block.

    Blocks entirely within the top K contribute their expected precision sums
    (:func:`_expected_block_sum`). If a block straddles position K, taking m of
    its n places above the cut, the number X of its relevant items above the cut
    is hypergeometric(n, r, m), the normaliser is R0 + X, and given X = x the x
    relevant items are uniform over those m places. Hence, with S the expected
    sum of the earlier blocks (independent of X),
    ``E[AP@K] = sum_x P(X = x) (S + block_sum(r0, n0, m, x)) / (r0 + x)``,
    terms with r0 + x = 0 being 0. Returns (nq,) float64; ``max_cells`` bounds a work array.
    """
    harmonic = _harmonic_table(stats.num_database)
    log_fact = gammaln(np.arange(stats.num_database + 1, dtype=np.float64) + 1.0)  # log(i!)
    nq = len(stats.hist_all)
    ap = np.zeros(nq, np.float64)
    step = max(1, _TIE_ROWS_CELLS // (stats.bits + 1))
    for s in range(0, nq, step):
        ap[s : s + step] = _tie_aware_rows(
            stats.hist_all[s : s + step], stats.hist_rel[s : s + step], stats.topk,
            harmonic, log_fact, max_cells,
        )
    return ap


def _tie_aware_rows(
    n_b: np.ndarray,
    r_b: np.ndarray,
    big_k: int,
    harmonic: np.ndarray,
    log_fact: np.ndarray,
    max_cells: int,
) -> np.ndarray:
    """:func:`_tie_aware_ap` for a chunk of queries: (Qc, bits+1) histograms -> (Qc,)."""
    n0 = np.cumsum(n_b, 1) - n_b  # (Qc, bits+1) items before each block
    r0 = np.cumsum(r_b, 1) - r_b
    full = (n0 + n_b <= big_k) & (n_b > 0)
    early = np.where(full, _expected_block_sum(r0, n0, n_b, r_b, harmonic), 0.0).sum(1)
    rel_full = np.where(full, r_b, 0).sum(1)  # (Qc,)
    ap = _safe_div(early, rel_full)
    straddle = (n0 < big_k) & (n0 + n_b > big_k) & (r_b > 0)  # at most one block per row
    rows, cols = np.nonzero(straddle)
    if len(rows) == 0:
        return ap
    n_s, r_s, n0_s = n_b[rows, cols], r_b[rows, cols], n0[rows, cols]
    r0_s = rel_full[rows]
    m_s = big_k - n0_s  # places above the cut, 1..n-1
    x_lo = np.maximum(0, m_s - (n_s - r_s))
    x_hi = np.minimum(r_s, m_s)
    width = int((x_hi - x_lo).max()) + 1
    step = max(1, max_cells // width)
    for s in range(0, len(rows), step):
        sl = slice(s, s + step)
        x = x_lo[sl, None] + np.arange(width)[None, :]  # (Qs, W)
        valid = x <= x_hi[sl, None]
        xs = np.minimum(x, x_hi[sl, None])  # keep every term in range
        n_, r_, m_ = n_s[sl, None], r_s[sl, None], m_s[sl, None]
        log_p = (
            _log_comb(r_, xs, log_fact)
            + _log_comb(n_ - r_, m_ - xs, log_fact)
            - _log_comb(n_, m_, log_fact)
        )  # (Qs, W) hypergeometric log-pmf
        p = np.where(valid, np.exp(log_p), 0.0)
        inner = _expected_block_sum(r0_s[sl, None], n0_s[sl, None], m_, xs, harmonic)
        term = _safe_div(early[rows[sl], None] + inner, r0_s[sl, None] + xs) * p  # (Qs, W)
        ap[rows[sl]] = term.sum(1)
    return ap


def _log_comb(n: np.ndarray, k: np.ndarray, log_fact: np.ndarray) -> np.ndarray:
    return log_fact[n] - log_fact[k] - log_fact[n - k]


def _expected_rel_at_k(stats: _Stats, k: int) -> np.ndarray:
    """(nq,) float64 expected relevant items within the first k (at most the database
    size) under random tie orders."""
    n_b, r_b = stats.hist_all, stats.hist_rel
    n0 = np.cumsum(n_b, 1) - n_b
    inside = np.clip(k - n0, 0, n_b)  # (nq, bits+1) places of each block above the cut
    return (_safe_div(r_b * inside, n_b)).sum(1)
