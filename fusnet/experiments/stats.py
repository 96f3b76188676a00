"""Significance tests and multi-seed summaries for reported mAP figures.

:func:`paired_ttest` returns the columns of the paper's Tables 4 and 7 (the
layout of SPSS's "Paired Samples Test"): the mean, standard deviation and
standard error of the pairing differences ``a - b``, the confidence interval of
the mean difference, ``t``, ``df`` and one- and two-sided p-values.
:func:`ttest_row` is one row of such a table (NaN below two pairs).
:func:`mean_and_spread` summarises one figure measured over several seeds.

Formulas, with ``d_i = a_i - b_i`` and ``n`` pairs::

    mean = sum(d) / n
    std  = sqrt(sum((d - mean)**2) / (n - 1))
    sem  = std / sqrt(n)
    t    = mean / sem,                 df = n - 1
    CI   = mean -/+ t_{(1+c)/2, df} * sem

``t`` and the p-values come from :func:`scipy.stats.ttest_rel`, the critical
value from :func:`scipy.stats.t`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as sps

logger = logging.getLogger(__name__)

OneSided = Literal["observed", "less", "greater"]


@dataclass(frozen=True)
class PairedTTest:
    """Result of a paired-sample t-test of ``a`` against ``b``.

    Attributes:
        mean: Mean of the differences ``a - b``.
        std: Sample standard deviation of the differences (``ddof=1``).
        sem: Standard error of the mean difference, ``std / sqrt(n)``.
        ci_lower: Lower bound of the ``confidence`` interval of the mean difference.
        ci_upper: Upper bound of that interval.
        t: The t statistic, ``mean / sem``.
        df: Degrees of freedom, ``n - 1``.
        p_one_sided: One-sided p-value for the alternative ``alternative``.
        p_two_sided: Two-sided p-value (alternative: the mean difference is not 0).
        alternative: Direction the one-sided p tests: ``"less"`` means H1 is
            ``mean(a - b) < 0`` (``a`` lower than ``b``), ``"greater"`` means
            ``mean(a - b) > 0``.
        n: Number of pairs.
        confidence: Confidence level of the interval.
    """

    mean: float
    std: float
    sem: float
    ci_lower: float
    ci_upper: float
    t: float
    df: int
    p_one_sided: float
    p_two_sided: float
    alternative: Literal["less", "greater"]
    n: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (column name -> value), in table order."""
        return asdict(self)


def _as_vector(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """Convert ``x`` to a finite 1-D float array or raise ``ValueError`` naming it."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a sequence of numbers: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr)).tolist()
        raise ValueError(
            f"{name} has non-finite values at positions {bad}; drop the unpaired cells first"
        )
    return arr


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def paired_ttest(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    one_sided: OneSided = "observed",
) -> PairedTTest:
    """Paired-sample t-test of ``a`` against ``b`` (differences ``a - b``).

    Args:
        a: First member of each pair, e.g. a baseline's mAP per (dataset, bits) cell.
        b: Second member, same length and order as ``a``.
        confidence: Level of the confidence interval of the mean difference.
        one_sided: Direction of the one-sided p-value. ``"observed"`` (default)
            tests in the direction of the observed mean difference, i.e. H1 is
            ``mean(a - b) < 0`` when the observed mean is negative (``"less"``)
            and ``> 0`` otherwise (``"greater"``); this is SPSS's "One-Sided p"
            (the paper's Table 7) and equals half the two-sided p. ``"less"`` or
            ``"greater"`` fix the direction in advance.

    Returns:
        The test's statistics; ``.to_dict()`` gives the table columns.

    Raises:
        ValueError: ``a`` and ``b`` differ in length, have fewer than two pairs,
            are not 1-D, hold NaN/inf, or ``confidence``/``one_sided`` is invalid.

    Notes:
        If all differences are equal the standard deviation is 0: ``t`` is
        ``+-inf`` with p-values 0 (nonzero mean) or NaN (zero mean), and a
        warning is logged.
    """
    x = _as_vector(a, "a")
    y = _as_vector(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must pair up: lengths {x.size} and {y.size}")
    n = x.size
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 pairs, got {n}")
    _check_confidence(confidence)
    if one_sided not in ("observed", "less", "greater"):
        raise ValueError(f"one_sided must be 'observed', 'less' or 'greater', got {one_sided!r}")

    d = x - y
    mean = float(d.mean())
    std = float(d.std(ddof=1))
    sem = std / math.sqrt(n)
    df = n - 1
    crit = float(sps.t.ppf(0.5 + confidence / 2.0, df))
    alternative: Literal["less", "greater"]
    if one_sided == "observed":
        alternative = "less" if mean < 0 else "greater"
    else:
        alternative = one_sided

    if std == 0.0:
        logger.warning("paired_ttest: all %d differences equal %.6g; t is degenerate", n, mean)
        t = math.copysign(math.inf, mean) if mean != 0.0 else math.nan
        p_two = 0.0 if mean != 0.0 else math.nan
        if mean == 0.0:
            p_one = math.nan
        else:
            p_one = 0.0 if (mean < 0) == (alternative == "less") else 1.0
    else:
        two = sps.ttest_rel(x, y, alternative="two-sided")
        one = sps.ttest_rel(x, y, alternative=alternative)
        t = float(two.statistic)
        p_two = float(two.pvalue)
        p_one = float(one.pvalue)

    return PairedTTest(
        mean=mean,
        std=std,
        sem=sem,
        ci_lower=mean - crit * sem,
        ci_upper=mean + crit * sem,
        t=t,
        df=df,
        p_one_sided=p_one,
        p_two_sided=p_two,
        alternative=alternative,
        n=n,
        confidence=confidence,
    )


TTEST_COLUMNS = ["mean", "std", "sem", "ci_lower", "ci_upper", "t", "df", "p_one_sided",
                 "p_two_sided", "n"]
"""Columns of a t-test row (besides ``comparison`` and ``pair``)."""


def ttest_row(comparison: str, pair: str, a: np.ndarray, b: np.ndarray) -> dict[str, object]:
    """A table row: ``comparison``, ``pair`` and :data:`TTEST_COLUMNS` of ``a − b``.

    The row of the paper's Tables 4 and 7 (``paper_tables.recompute_table4/7``) and of
    ours (``experiments.tables``, ``experiments.baselines``). Fewer than two pairs give
    NaN statistics with their ``n`` (logged).
    """
    row: dict[str, object] = {"comparison": comparison, "pair": pair}
    if len(a) < 2:
        logger.info("%s: %d paired cell(s); a t-test needs 2", pair, len(a))
        row.update({c: math.nan for c in TTEST_COLUMNS})
        row["n"] = len(a)
        return row
    res = paired_ttest(a, b)
    row.update({c: getattr(res, c) for c in TTEST_COLUMNS})
    return row


def mean_and_spread(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> dict[str, float | int]:
    """Mean and spread of one figure measured several times (e.g. over seeds).

    Args:
        values: The measurements (1-D, finite).
        confidence: Level of the t-based confidence interval of the mean.

    Returns:
        ``{"mean", "std", "n", "sem", "ci_half_width", "ci_lower", "ci_upper"}``:
        ``std`` is the sample standard deviation (``ddof=1``), ``sem = std /
        sqrt(n)``, ``ci_half_width = t_{(1+confidence)/2, n-1} * sem`` and the
        interval is ``mean -/+ ci_half_width``. With a single value the spread
        fields are NaN (a debug message is logged).

    Raises:
        ValueError: ``values`` is empty, not 1-D, or holds NaN/inf, or
            ``confidence`` is not in (0, 1).
    """
    v = _as_vector(values, "values")
    _check_confidence(confidence)
    n = v.size
    if n == 0:
        raise ValueError("values is empty")
    mean = float(v.mean())
    if n == 1:
        logger.debug("mean_and_spread: one value, spread undefined")
        std = sem = half = math.nan
    else:
        std = float(v.std(ddof=1))
        sem = std / math.sqrt(n)
        half = float(sps.t.ppf(0.5 + confidence / 2.0, n - 1)) * sem
    return {
        "mean": mean,
        "std": std,
        "n": n,
        "sem": sem,
        "ci_half_width": half,
        "ci_lower": mean - half,
        "ci_upper": mean + half,
    }
