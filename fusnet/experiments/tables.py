"""Table builders for the notebooks: our runs beside the paper's Tables 3-7.

Pure functions from :class:`~fusnet.experiments.runs.RunRecord` lists and the
paper's tables (``fusnet.experiments.paper_tables.load_table``) to pandas DataFrames. mAP is
in percent everywhere here, as the paper prints it; ``map`` is our figure with
Hamming ties broken by database index, ``map_tie_aware`` the expected AP over
tied orders (method.md section 6).

Datasets are matched by name: a run's dataset name (``"cub200"``) against the
paper's ``dataset_id``. A dataset the paper does not have (the synthetic set)
gets our columns only; a paper dataset we did not run gets the paper's only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from fusnet.experiments.paper_tables import matches_printed
from fusnet.experiments.runs import ABLATION_LINES, RunRecord
from fusnet.experiments.stats import TTEST_COLUMNS, ttest_row

logger = logging.getLogger(__name__)


def runs_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per run: dataset, bits, label, map, map_tie_aware (percent), epoch, run.

    ``epoch`` is the selected epoch (best validation mAP, or the last); ``run`` the
    run folder's name.
    """
    rows = [
        {
            "dataset": r.dataset,
            "bits": r.bits,
            "label": r.label,
            "map": 100.0 * r.map_index_ties,
            "map_tie_aware": 100.0 * r.map_tie_aware,
            "epoch": (r.metrics.get("selection") or {}).get("epoch"),
            "run": r.path.name,
        }
        for r in records
    ]
    columns = ["dataset", "bits", "label", "map", "map_tie_aware", "epoch", "run"]
    return pd.DataFrame(rows, columns=columns)


def _paper_wide(table3: pd.DataFrame) -> pd.DataFrame:
    wide = table3.pivot_table(
        index=["dataset_id", "bits"], columns="method", values="map", sort=False, dropna=False
    )
    wide = wide[list(dict.fromkeys(table3["method"]))]
    wide.columns.name = None
    return wide.rename(columns={"Ours": "Ours (paper)"}).rename_axis(["dataset", "bits"])


def table3_comparison(ours: pd.DataFrame, table3: pd.DataFrame) -> pd.DataFrame:
    """Table 3 with our mAP beside every method's, and the gains over the best baseline.

    Args:
        ours: :func:`runs_frame` of the full-model runs (one row per dataset and bits).
        table3: the paper's Table 3 (``load_table(3)``).

    Returns:
        One row per (dataset, bits), the paper's datasets first: the paper's methods
        (SDH ... AMGH), ``Ours (paper)``, ``Ours (replication)`` and ``Ours
        (replication, tie-aware)``; ``best baseline`` (the best of SDH ... AMGH),
        ``gain (paper)`` = Ours (paper) - best baseline, ``gain (replication)`` =
        Ours (replication) - best baseline, ``replication - paper``.
    """
    paper = _paper_wide(table3)
    baselines = [c for c in paper.columns if c != "Ours (paper)"]
    mine = ours.set_index(["dataset", "bits"])[["map", "map_tie_aware"]].rename(
        columns={"map": "Ours (replication)", "map_tie_aware": "Ours (replication, tie-aware)"}
    )
    extra = mine.index.difference(paper.index, sort=False)
    table = paper.reindex(paper.index.append(extra)).join(mine)
    table["best baseline"] = table[baselines].max(axis=1)
    table["gain (paper)"] = table["Ours (paper)"] - table["best baseline"]
    table["gain (replication)"] = table["Ours (replication)"] - table["best baseline"]
    table["replication - paper"] = table["Ours (replication)"] - table["Ours (paper)"]
    return table.reset_index()


def improvements(ours: pd.DataFrame, table3: pd.DataFrame) -> pd.DataFrame:
    """Improvement of Ours over every method of Table 3, the paper's and ours (points).

    Returns:
        Long format, one row per (dataset, bits, method) of the paper's Table 3:
        ``method_map`` (the paper's), ``paper_improvement`` = the paper's Ours minus
        the method, and ``replication_improvement`` = our mAP minus the method (NaN
        where we have no run on that dataset and length).
    """
    paper = _paper_wide(table3)
    mine = ours.set_index(["dataset", "bits"])["map"]
    rows = []
    for (dataset, bits), row in paper.iterrows():
        our = float(mine.get((dataset, bits), math.nan))
        for method, value in row.items():
            if method == "Ours (paper)":
                continue
            rows.append(
                {
                    "dataset": dataset,
                    "bits": bits,
                    "method": method,
                    "method_map": value,
                    "paper_improvement": row["Ours (paper)"] - value,
                    "replication_improvement": our - value,
                }
            )
    return pd.DataFrame(rows)


def mean_improvements(improvement: pd.DataFrame) -> pd.DataFrame:
    """Mean improvement over each method per code length (the paper's text claims).

    Args:
        improvement: :func:`improvements`.

    Returns:
        Rows (method, bits): ``paper_improvement`` and ``replication_improvement``
        averaged over the datasets where the method has a value (NaN-skipping).
    """
    return (
        improvement.groupby(["method", "bits"], sort=False)[
            ["paper_improvement", "replication_improvement"]
        ]
        .mean()
        .reset_index()
    )


def ttests_against_paper(
    ours: pd.DataFrame, table3: pd.DataFrame, methods: Sequence[str] = ("Semicon", "AMGH")
) -> pd.DataFrame:
    """Table 4 with our mAP: paired t-tests of the paper's baselines against our runs.

    Differences are ``method - Ours (replication)`` over the (dataset, bits) cells
    where both have a value, as Table 4 pairs ``method - Ours``. Fewer than two
    cells gives a row of NaN with its ``n``.
    """
    paper = _paper_wide(table3)
    mine = ours.set_index(["dataset", "bits"])["map"]
    rows = []
    for k, method in enumerate(methods, 1):
        cells = paper[[method]].join(mine.rename("ours"), how="inner").dropna()
        rows.append(
            ttest_row(f"Comparison {k}", f"{method}–Ours (replication)",
                       cells[method].to_numpy(), cells["ours"].to_numpy())
        )
    return pd.DataFrame(rows, columns=["comparison", "pair", *TTEST_COLUMNS])


def printed_check(recomputed: pd.DataFrame, printed: pd.DataFrame) -> pd.DataFrame:
    """Compare recomputed t-tests with the printed table, cell by cell.

    Args:
        recomputed: ``recompute_table4()`` or ``recompute_table7()``.
        printed: the same table as printed (``load_table(n, as_printed=True)``).

    Returns:
        One row per printed statistic: ``comparison``, ``column``, ``printed`` (the
        string), ``recomputed`` and ``matches`` (the recomputed value rounds to the
        printed digits; ``fusnet.experiments.paper_tables.matches_printed``).
    """
    source = {"sig_one_sided": "p_one_sided", "sig_two_sided": "p_two_sided"}
    columns = ["mean", "std", "sem", "ci_lower", "ci_upper", "t", "df"] + [
        c for c in printed.columns if c.startswith("sig_")
    ]
    rows = []
    for i in range(len(printed)):
        for column in columns:
            value = float(recomputed.iloc[i][source.get(column, column)])
            cell = str(printed.iloc[i][column])
            rows.append(
                {
                    "comparison": printed.iloc[i]["comparison"],
                    "pair": printed.iloc[i]["pair"],
                    "column": column,
                    "printed": cell,
                    "recomputed": value,
                    "matches": matches_printed(value, cell),
                }
            )
    return pd.DataFrame(rows)


def side_by_side(ours: pd.DataFrame, paper: pd.DataFrame, keys: Sequence[str] = ("dataset", "bits")) -> pd.DataFrame:
    """Paper mAP and ours per key, over the union of both (Tables 5 and 6).

    Args:
        ours: :func:`runs_frame` (possibly with a ``configuration`` column).
        paper: the paper's table, with ``dataset_id`` as the dataset key.
        keys: the columns that identify a cell.

    Returns:
        ``keys`` + ``paper`` + ``map`` + ``map_tie_aware`` (+ ``replication -
        paper``); the paper's rows first, in its order.
    """
    keys = list(keys)
    left = paper.rename(columns={"dataset": "dataset_name", "dataset_id": "dataset"})
    left = left[[*keys, "map"]].rename(columns={"map": "paper"})
    right = ours[[*keys, "map", "map_tie_aware"]]
    table = left.merge(right, on=keys, how="outer", sort=False)
    order = {key: i for i, key in enumerate(map(tuple, left[keys].to_numpy().tolist()))}
    table["_order"] = [order.get(tuple(k), len(order) + i)
                       for i, k in enumerate(table[keys].to_numpy().tolist())]
    table = table.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
    table["replication - paper"] = table["map"] - table["paper"]
    return table


def ablation_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """:func:`runs_frame` of Table 6 runs with ``configuration`` and ``line`` columns."""
    frame = runs_frame(records).rename(columns={"label": "configuration"})
    frame.insert(2, "line", frame["configuration"].map(ABLATION_LINES).astype("Int64"))
    return frame


def ablation_ttests(ablation: pd.DataFrame, value: str = "map") -> pd.DataFrame:
    """Table 7 with our mAP: each configuration's line against line 5 (the full model).

    Args:
        ablation: :func:`ablation_frame` or the paper's Table 6 (both have ``line``,
            ``dataset``/``dataset_id``, ``bits`` and a mAP column).
        value: the mAP column.

    Returns:
        One row per line present other than 5: ``LineK - Line5`` over the (dataset,
        bits) cells where both have a value.
    """
    dataset = "dataset_id" if "dataset_id" in ablation.columns else "dataset"
    wide = ablation.pivot_table(
        index=[dataset, "bits"], columns="line", values=value, sort=False, dropna=False
    )
    rows = []
    for k, line in enumerate(sorted(int(x) for x in wide.columns if int(x) != 5), 1):
        if 5 not in wide.columns:
            break
        cells = wide[[line, 5]].dropna()
        rows.append(
            ttest_row(f"Comparison {k}", f"Line{line} - Line5",
                       cells[line].to_numpy(), cells[5].to_numpy())
        )
    return pd.DataFrame(rows, columns=["comparison", "pair", *TTEST_COLUMNS])


def history_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Per-epoch records of each run: dataset, bits, label, epoch, loss, val_map (%).

    ``val_map`` is the validation split's mAP (held out from the training split),
    recorded each epoch with ``eval_every=1``; the test split is never used during
    training.
    """
    rows = []
    for r in records:
        for h in r.metrics.get("history", []):
            rows.append(
                {
                    "dataset": r.dataset,
                    "bits": r.bits,
                    "label": r.label,
                    "epoch": int(h["epoch"]),
                    "loss": h.get("loss", math.nan),
                    "val_map": 100.0 * h["val_map"] if "val_map" in h else math.nan,
                    "seconds": h.get("seconds", math.nan),
                }
            )
    columns = ["dataset", "bits", "label", "epoch", "loss", "val_map", "seconds"]
    return pd.DataFrame(rows, columns=columns)


def proxy_code_table(
    class_counts: dict[str, int], bits: Sequence[int], iterations: int = 15, seed: int = 0
) -> tuple[pd.DataFrame, dict[tuple[str, int], np.ndarray]]:
    """Class proxy codes' Hamming structure per dataset and code length.

    Args:
        class_counts: dataset name -> number of classes.
        bits: code lengths.
        iterations: FISH iterations (paper 15).
        seed: proxy-code seed (``LossConfig.proxy_seed``).

    Returns:
        The table (one row per dataset and bits: classes, min/mean/max/std pairwise
        Hamming distance, collisions, unique codes, largest |bit mean|, and
        ``hamming_mean_normalised`` = mean distance / bits) and the codes, (C, bits)
        in {-1, +1}, keyed by (dataset, bits).

    Raises:
        ConfigError: no datasets, or a class count that is not an integer >= 2.
    """
    from fusnet.errors import ConfigError
    from fusnet.models.proxy_codes import class_proxy_codes, code_diagnostics

    bad = {k: v for k, v in class_counts.items()
           if not isinstance(v, int) or isinstance(v, bool) or v < 2}
    if not class_counts or bad:
        raise ConfigError(f"class_counts must map names to integers >= 2, got {class_counts}")

    rows, codes = [], {}
    for name, count in class_counts.items():
        for k in bits:
            p = class_proxy_codes(int(count), int(k), iterations, seed=seed)  # (C, k)
            d = code_diagnostics(p)
            codes[(name, int(k))] = p.numpy()
            rows.append(
                {
                    "dataset": name,
                    "classes": int(count),
                    "bits": int(k),
                    "hamming_min": d["hamming_min"],
                    "hamming_mean": d["hamming_mean"],
                    "hamming_max": d["hamming_max"],
                    "hamming_std": d["hamming_std"],
                    "hamming_mean_normalised": d["hamming_mean"] / k,
                    "collisions": d["collisions"],
                    "unique_codes": d["unique_codes"],
                    "bit_balance_max_abs": d["bit_balance_max_abs"],
                }
            )
    return pd.DataFrame(rows), codes


def hamming_matrix(codes: np.ndarray) -> np.ndarray:
    """(C, C) Hamming distances between the rows of a {-1, +1} code matrix (C, k)."""
    c = np.asarray(codes, dtype=np.float64)
    return np.rint(0.5 * (c.shape[1] - c @ c.T)).astype(np.int64)
