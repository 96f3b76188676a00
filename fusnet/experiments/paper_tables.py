"""The paper's result tables (Cui et al., PeerJ CS 2024), as printed, and their t-tests.

The tables live as CSV files in ``data/paper/`` at the repository root (not in
the package); ``data/paper/README.md`` says where each came from and which
printed cells are ambiguous or irreproducible. ``FUSNET_PAPER_DATA`` overrides
the folder (e.g. for an installed wheel without the repository).

=====  ===========================================  ====================================
table  content                                      columns
=====  ===========================================  ====================================
3      mAP (%) of 9 methods, 5 datasets, 4 lengths  method, dataset, dataset_id, bits, map
4      paired t-tests, Semicon/AMGH vs Ours         comparison, pair, method_a, method_b,
                                                    mean, std, sem, ci_lower, ci_upper, t,
                                                    df, sig_two_sided
5      mAP (%) on the generalisation datasets       dataset, dataset_id, bits, map
6      ablation mAP (%), 5 configurations           line, resnet50, cascading, fusion,
                                                    attention, dataset, dataset_id, bits,
                                                    map (+ derived ``configuration``)
7      paired t-tests, ablation lines vs line 5     comparison, pair, line_a, line_b, mean,
                                                    std, sem, ci_lower, ci_upper, t, df,
                                                    sig_one_sided, sig_two_sided
=====  ===========================================  ====================================

``dataset_id`` is the name in :mod:`fusnet.data` (``cub200``, ``nabirds`` ...).
mAP values are percentages, as printed. :func:`recompute_table4` and
:func:`recompute_table7` redo the paper's t-tests from Tables 3 and 6 with
:func:`fusnet.experiments.stats.paired_ttest`; :func:`matches_printed` says whether a
computed figure rounds to a printed one.
"""

from __future__ import annotations

import logging
import math
import os
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pandas as pd

from fusnet.experiments.config import REPO_ROOT
from fusnet.experiments.stats import ttest_row

logger = logging.getLogger(__name__)

PAPER_DATA_ENV = "FUSNET_PAPER_DATA"
"""Environment variable that overrides the folder holding the table CSVs."""

TABLE_FILES: dict[int, str] = {
    3: "table3.csv",
    4: "table4.csv",
    5: "table5.csv",
    6: "table6.csv",
    7: "table7.csv",
}
"""Table number -> CSV file name in the paper-data folder."""

_INT_COLUMNS = ("bits", "df", "line")
_BOOL_COLUMNS = ("resnet50", "cascading", "fusion", "attention")
_STR_COLUMNS = ("sig_one_sided", "sig_two_sided")  # "0.000", "<.001": kept as printed


def paper_data_dir() -> Path:
    """Folder holding the table CSVs: ``$FUSNET_PAPER_DATA`` or ``<repo>/data/paper``."""
    override = os.environ.get(PAPER_DATA_ENV)
    if override:
        return Path(override)
    return REPO_ROOT / "data" / "paper"


def table_path(number: int) -> Path:
    """Path of Table ``number``'s CSV (which may not exist).

    Raises:
        ValueError: ``number`` is not one of the transcribed tables.
    """
    if number not in TABLE_FILES:
        raise ValueError(f"no transcription of Table {number!r}; available: {sorted(TABLE_FILES)}")
    return paper_data_dir() / TABLE_FILES[number]


def _configuration_name(row: pd.Series) -> str:
    parts = [name for name in ("cascading", "fusion", "attention") if row[name]]
    return "+".join(parts) if parts else "baseline"


def load_table(number: int, *, as_printed: bool = False) -> pd.DataFrame:
    """Load one of the paper's tables (3-7) from its CSV.

    Args:
        number: The table number in the paper.
        as_printed: If true, every cell is the string in the CSV (the printed
            digits, e.g. ``"-1.560"`` or ``"86.4"``; ``""`` for a missing cell) and
            no column is added. If false, numbers are parsed (``map`` float with
            NaN for a missing cell, ``bits``/``df``/``line`` int, the Table 6
            flags bool), p-value columns stay strings (``"<.001"``), and Table 6
            gains a ``configuration`` column (``"baseline"``, ``"cascading"``,
            ``"cascading+fusion"``, ...).

    Returns:
        The table in long format (one row per printed cell for Tables 3, 5, 6;
        one row per comparison for Tables 4, 7), in the printed order.

    Raises:
        ValueError: No transcription of that table exists.
        FileNotFoundError: The CSV is missing (e.g. an installed package without
            the repository's ``data/paper``); the message says how to fix it.
    """
    path = table_path(number)
    if not path.is_file():
        raise FileNotFoundError(
            f"Table {number} transcription not found at {path}. The CSVs live in the "
            f"repository's data/paper/ folder, which an installed package does not carry: "
            f"run from a checkout of the repository or set {PAPER_DATA_ENV} to the folder "
            f"holding {TABLE_FILES[number]}."
        )
    if as_printed:
        return pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
    df = pd.read_csv(
        path,
        comment="#",
        dtype={c: str for c in _STR_COLUMNS},
        true_values=["true"],
        false_values=["false"],
    )
    for col in _INT_COLUMNS:
        if col in df.columns:
            df[col] = df[col].astype(int)
    for col in _BOOL_COLUMNS:
        if col in df.columns and df[col].dtype != bool:
            raise ValueError(f"{path}: column {col!r} must hold only true/false")
    if number == 6:
        df["configuration"] = df.apply(_configuration_name, axis=1)
    logger.debug("loaded Table %d from %s (%d rows)", number, path, len(df))
    return df


def paired_cells(table3: pd.DataFrame, method_a: str, method_b: str = "Ours") -> pd.DataFrame:
    """Table 3 cells (dataset, bits) where both methods have a value.

    Args:
        table3: Table 3 as returned by ``load_table(3)``.
        method_a: Method name as printed (e.g. ``"Semicon"``, ``"AMGH"``).
        method_b: The other method, by default ``"Ours"``.

    Returns:
        Columns ``dataset, bits, <method_a>, <method_b>``, one row per cell with
        both values present, in the printed order.

    Raises:
        KeyError: A method is not in the table.
    """
    known = list(dict.fromkeys(table3["method"]))
    for m in (method_a, method_b):
        if m not in known:
            raise KeyError(f"method {m!r} not in Table 3; known: {known}")
    wide = table3.pivot_table(
        index=["dataset", "bits"], columns="method", values="map", sort=False, dropna=False
    )
    wide = wide[[method_a, method_b]].dropna().reset_index()
    wide.columns.name = None
    return wide


def recompute_table4(table3: pd.DataFrame | None = None) -> pd.DataFrame:
    """Redo Table 4: paired t-tests of Semicon and AMGH against Ours over Table 3.

    Each comparison pairs every (dataset, bits) cell where both methods have a
    value: 20 cells for Semicon (df 19), 16 for AMGH, which has no NABirds
    result (df 15), as the printed degrees of freedom say.

    Args:
        table3: Table 3 (``load_table(3)`` when omitted).

    Returns:
        One row per comparison: ``comparison, pair, mean, std, sem, ci_lower,
        ci_upper, t, df, p_one_sided, p_two_sided, n`` (differences method - Ours).
    """
    t3 = load_table(3) if table3 is None else table3
    rows = []
    for k, method in enumerate(("Semicon", "AMGH"), start=1):
        cells = paired_cells(t3, method, "Ours")
        rows.append(
            ttest_row(
                f"Comparison {k}",
                f"{method}–Ours",
                cells[method].to_numpy(),
                cells["Ours"].to_numpy(),
            )
        )
    return pd.DataFrame(rows)


def recompute_table7(table6: pd.DataFrame | None = None) -> pd.DataFrame:
    """Redo Table 7: paired t-tests of ablation lines 1-4 against line 5 over Table 6.

    Each comparison pairs the 12 (dataset, bits) cells of Table 6 (df 11), using
    Table 6's own values (so CUB 32-bit line 5 is 79.97, not Table 3's 82.67).

    Args:
        table6: Table 6 (``load_table(6)`` when omitted).

    Returns:
        One row per comparison: ``comparison, pair, mean, std, sem, ci_lower,
        ci_upper, t, df, p_one_sided, p_two_sided, n`` (differences LineK - Line5).
    """
    t6 = load_table(6) if table6 is None else table6
    wide = t6.pivot_table(
        index=["dataset", "bits"], columns="line", values="map", sort=False, dropna=False
    )
    rows = [
        ttest_row(
            f"Comparison {k}",
            f"Line{k} - Line5",
            wide[k].to_numpy(),
            wide[5].to_numpy(),
        )
        for k in (1, 2, 3, 4)
    ]
    return pd.DataFrame(rows)


def printed_decimals(printed: str) -> int:
    """Number of digits after the decimal point in a printed number (``"-1.560"`` -> 3)."""
    text = printed.strip()
    return len(text.split(".", 1)[1]) if "." in text else 0


def matches_printed(value: float, printed: str) -> bool:
    """Whether ``value`` agrees with a printed figure to the printed digits.

    A number printed with ``k`` decimals matches when ``|value - printed| <=
    0.5 * 10**-k`` (plus a float tolerance of 1e-9), i.e. when rounding
    ``value`` to ``k`` decimals may give the printed digits. A printed bound
    such as ``"<.001"`` matches when ``value`` is below it; ``"0.000"`` is the
    ordinary rule (``value < 0.0005``).

    Args:
        value: The recomputed figure.
        printed: The printed cell, as in ``load_table(n, as_printed=True)``.

    Raises:
        ValueError: ``printed`` is empty or not a number (optionally after ``<``/``>``).
    """
    text = printed.strip()
    if not text:
        raise ValueError("printed cell is empty")
    op = text[0] if text[0] in "<>" else ""
    try:
        bound = Decimal(text[len(op) :])
    except InvalidOperation as exc:
        raise ValueError(f"not a printed number: {printed!r}") from exc
    if op == "<":
        return value < float(bound)
    if op == ">":
        return value > float(bound)
    half_ulp = 0.5 * 10.0 ** (-printed_decimals(text))
    return math.isfinite(value) and abs(value - float(bound)) <= half_ulp + 1e-9


def mean_improvement_by_bits(table3: pd.DataFrame, over: str, method: str = "Ours") -> pd.Series:
    """Mean mAP difference ``method - over`` per code length, in points.

    Averages over the datasets where both methods have a value (the paper's
    "average enhancement of 40% at 12-bit ..." claims).

    Args:
        table3: Table 3 (``load_table(3)``), possibly with cells edited.
        over: The baseline method as printed (``"Semicon"``, ``"AMGH"``).
        method: The improved method, by default ``"Ours"``.

    Returns:
        Series indexed by ``bits``.
    """
    cells = paired_cells(table3, over, method)
    diff = cells[method] - cells[over]
    return diff.groupby(cells["bits"]).mean()
