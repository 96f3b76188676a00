"""Paired t-tests (the columns of the paper's Tables 4 and 7) and multi-seed summaries. With
``d = a - b`` over ``n`` pairs: ``std`` has ``ddof=1``, ``sem = std / sqrt(n)``, ``df = n - 1``,
``CI = mean -/+ t_{(1+c)/2, df} * sem``; ``t`` and p from ``scipy.stats.ttest_rel``.
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
    """A paired t-test of ``a`` against ``b`` (differences ``a - b``). ``alternative`` is the
    direction ``p_one_sided`` tests: ``"less"`` means H1 is ``mean(a - b) < 0``."""

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
        """The fields, in table order."""
        return asdict(self)


def _as_vector(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """``x`` as a finite 1-D float array, or a ValueError naming it."""
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


def _critical(confidence: float, df: int) -> float:
    """The two-sided t critical value of the ``confidence`` interval with ``df``."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    return float(sps.t.ppf(0.5 + confidence / 2.0, df)) if df > 0 else math.nan


def paired_ttest(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                 confidence: float = 0.95, one_sided: OneSided = "observed") -> PairedTTest:
    """Paired-sample t-test of ``a`` against ``b``. ``one_sided="observed"``: in the observed
    mean's direction (SPSS's "One-Sided p", as Table 7 prints it), else as given. All
    differences equal: ``t`` is ``+-inf`` with p 0, NaN for a zero mean."""
    x, y = _as_vector(a, "a"), _as_vector(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must pair up: lengths {x.size} and {y.size}")
    n = x.size
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 pairs, got {n}")
    crit = _critical(confidence, n - 1)
    if one_sided not in ("observed", "less", "greater"):
        raise ValueError(f"one_sided must be 'observed', 'less' or 'greater', got {one_sided!r}")
    d = x - y
    mean, std = float(d.mean()), float(d.std(ddof=1))
    sem = std / math.sqrt(n)
    alternative: Literal["less", "greater"] = (
        ("less" if mean < 0 else "greater") if one_sided == "observed" else one_sided)
    if std == 0.0:
        logger.warning("paired_ttest: all %d differences equal %.6g; t is degenerate", n, mean)
        if mean == 0.0:
            t = p_two = p_one = math.nan
        else:
            t, p_two = math.copysign(math.inf, mean), 0.0
            p_one = 0.0 if (mean < 0) == (alternative == "less") else 1.0
    else:
        two = sps.ttest_rel(x, y, alternative="two-sided")
        t, p_two = float(two.statistic), float(two.pvalue)
        p_one = float(sps.ttest_rel(x, y, alternative=alternative).pvalue)
    return PairedTTest(mean=mean, std=std, sem=sem, ci_lower=mean - crit * sem,
                       ci_upper=mean + crit * sem, t=t, df=n - 1, p_one_sided=p_one,
                       p_two_sided=p_two, alternative=alternative, n=n, confidence=confidence)


TTEST_COLUMNS = ["mean", "std", "sem", "ci_lower", "ci_upper", "t", "df", "p_one_sided",
                 "p_two_sided", "n"]  # a t-test row's, after comparison and pair


def ttest_row(comparison: str, pair: str, a: np.ndarray, b: np.ndarray) -> dict[str, object]:
    """A row of Tables 4 and 7 for ``a − b`` (below two pairs NaN with their ``n``)."""
    row: dict[str, object] = {"comparison": comparison, "pair": pair}
    if len(a) < 2:
        logger.info("%s: %d paired cell(s); a t-test needs 2", pair, len(a))
        return {**row, **{c: math.nan for c in TTEST_COLUMNS}, "n": len(a)}
    res = paired_ttest(a, b)
    return {**row, **{c: getattr(res, c) for c in TTEST_COLUMNS}}


def mean_and_spread(values: Sequence[float] | np.ndarray,
                    confidence: float = 0.95) -> dict[str, float | int]:
    """Mean, std, n, sem and t interval (``ci_*``) of one figure measured over seeds."""
    v = _as_vector(values, "values")
    n = v.size
    crit = _critical(confidence, n - 1)
    if n == 0:
        raise ValueError("values is empty")
    mean = float(v.mean())
    if n == 1:
        logger.debug("mean_and_spread: one value, spread undefined")
        std = sem = half = math.nan
    else:
        std = float(v.std(ddof=1))
        sem = std / math.sqrt(n)
        half = crit * sem
    return {"mean": mean, "std": std, "n": n, "sem": sem, "ci_half_width": half,
            "ci_lower": mean - half, "ci_upper": mean + half}
