"""The paper's result tables (Cui et al., PeerJ CS 2024), as printed, and their t-tests
redone. The CSVs (mAP % in Tables 3, 5, 6, ``dataset_id`` the name in :mod:`fusnet.data`;
t-tests in 4, 7) are in ``data/paper/`` (its README: sources) or ``$FUSNET_PAPER_DATA``.
"""

from __future__ import annotations

import logging
import math
import os
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pandas as pd

from fusnet.experiments.config import REPO_ROOT
from fusnet.experiments.stats import TTEST_COLUMNS, ttest_row

logger = logging.getLogger(__name__)

PAPER_DATA_ENV = "FUSNET_PAPER_DATA"
TABLE_FILES: dict[int, str] = {n: f"table{n}.csv" for n in (3, 4, 5, 6, 7)}
_INT_COLUMNS = ("bits", "df", "line")
_BOOL_COLUMNS = ("resnet50", "cascading", "fusion", "attention")
_STR_COLUMNS = ("sig_one_sided", "sig_two_sided")  # "0.000", "<.001": kept as printed


def paper_data_dir() -> Path:
    """Folder holding the table CSVs: ``$FUSNET_PAPER_DATA`` or ``<repo>/data/paper``."""
    override = os.environ.get(PAPER_DATA_ENV)
    return Path(override) if override else REPO_ROOT / "data" / "paper"


def table_path(number: int) -> Path:
    """Path of Table ``number``'s CSV; ValueError for a table not transcribed."""
    if number not in TABLE_FILES:
        raise ValueError(f"no transcription of Table {number!r}; available: {sorted(TABLE_FILES)}")
    return paper_data_dir() / TABLE_FILES[number]


def _configuration_name(row: pd.Series) -> str:
    parts = [name for name in ("cascading", "fusion", "attention") if row[name]]
    return "+".join(parts) if parts else "baseline"


def load_table(number: int, *, as_printed: bool = False) -> pd.DataFrame:
    """One of the paper's tables (3-7), long format, in the printed order: every cell a string
    (``as_printed``) or typed but the p-values, Table 6 with a ``configuration`` column."""
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
    df = pd.read_csv(path, comment="#", dtype={c: str for c in _STR_COLUMNS},
                     true_values=["true"], false_values=["false"])
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
    """Table 3's (dataset, bits) cells where both methods have a value, in printed order."""
    known = list(dict.fromkeys(table3["method"]))
    for m in (method_a, method_b):
        if m not in known:
            raise KeyError(f"method {m!r} not in Table 3; known: {known}")
    wide = table3.pivot_table(index=["dataset", "bits"], columns="method", values="map",
                              sort=False, dropna=False)
    wide = wide[[method_a, method_b]].dropna().reset_index()
    wide.columns.name = None
    return wide


def recompute_table4(table3: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 4 redone: Semicon and AMGH against Ours over every Table 3 cell both have (20
    for Semicon, 16 for AMGH, which has no NABirds result: the printed df 19 and 15)."""
    t3 = load_table(3) if table3 is None else table3
    rows = []
    for k, method in enumerate(("Semicon", "AMGH"), start=1):
        cells = paired_cells(t3, method, "Ours")
        rows.append(ttest_row(f"Comparison {k}", f"{method}–Ours",
                              cells[method].to_numpy(), cells["Ours"].to_numpy()))
    return pd.DataFrame(rows)


def ablation_ttests(ablation: pd.DataFrame, value: str = "map") -> pd.DataFrame:
    """Table 7 for ``tables.ablation_frame`` or the paper's Table 6: each line other than 5
    against line 5 (``LineK - Line5``) over the (dataset, bits) cells both have."""
    dataset = "dataset_id" if "dataset_id" in ablation.columns else "dataset"
    wide = ablation.pivot_table(index=[dataset, "bits"], columns="line", values=value,
                                sort=False, dropna=False)
    rows = []
    for k, line in enumerate(sorted(int(x) for x in wide.columns if int(x) != 5), 1):
        if 5 not in wide.columns:
            break
        cells = wide[[line, 5]].dropna()
        rows.append(ttest_row(f"Comparison {k}", f"Line{line} - Line5",
                              cells[line].to_numpy(), cells[5].to_numpy()))
    return pd.DataFrame(rows, columns=["comparison", "pair", *TTEST_COLUMNS])


def recompute_table7(table6: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 7 redone over Table 6's 12 cells (df 11), with Table 6's own values (CUB 32-bit
    line 5 is 79.97 there, 82.67 in Table 3)."""
    return ablation_ttests(load_table(6) if table6 is None else table6)


def printed_decimals(printed: str) -> int:
    """Number of digits after the decimal point in a printed number (``"-1.560"`` -> 3)."""
    text = printed.strip()
    return len(text.split(".", 1)[1]) if "." in text else 0


def matches_printed(value: float, printed: str) -> bool:
    """Whether ``value`` rounds to a printed figure: within half a unit of its last printed
    digit (+1e-9); a bound such as ``"<.001"`` matches a value below it."""
    text = printed.strip()
    if not text:
        raise ValueError("printed cell is empty")
    op = text[0] if text[0] in "<>" else ""
    try:
        bound = Decimal(text[len(op):])
    except InvalidOperation as exc:
        raise ValueError(f"not a printed number: {printed!r}") from exc
    if op == "<":
        return value < float(bound)
    if op == ">":
        return value > float(bound)
    half_ulp = 0.5 * 10.0 ** (-printed_decimals(text))
    return math.isfinite(value) and abs(value - float(bound)) <= half_ulp + 1e-9


def mean_improvement_by_bits(table3: pd.DataFrame, over: str, method: str = "Ours") -> pd.Series:
    """Mean ``method - over`` per code length (the paper's "average enhancement" claims)."""
    cells = paired_cells(table3, over, method)
    return (cells[method] - cells[over]).groupby(cells["bits"]).mean()
