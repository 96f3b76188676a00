"""Table builders for the notebooks: our runs beside the paper's Tables 3-7, mAP in percent
(``map``: Hamming ties broken by database index; ``map_tie_aware``: the expected AP over tied
orders, method.md section 6), datasets matched by name (a run's against ``dataset_id``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fusnet.errors import ConfigError
from fusnet.experiments.paper_tables import ablation_ttests as ablation_ttests  # notebook 03's
from fusnet.experiments.paper_tables import matches_printed
from fusnet.experiments.runs import ABLATION_LINES, RunRecord
from fusnet.experiments.stats import TTEST_COLUMNS, ttest_row


def runs_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per run: its grid cell, mAPs (%), selected epoch and folder name."""
    rows = [{"dataset": r.dataset, "bits": r.bits, "label": r.label,
             "map": 100.0 * r.map_index_ties, "map_tie_aware": 100.0 * r.map_tie_aware,
             "epoch": (r.metrics.get("selection") or {}).get("epoch"), "run": r.path.name}
            for r in records]
    return pd.DataFrame(rows, columns=["dataset", "bits", "label", "map", "map_tie_aware",
                                       "epoch", "run"])


def _paper_wide(table3: pd.DataFrame) -> pd.DataFrame:
    wide = table3.pivot_table(index=["dataset_id", "bits"], columns="method", values="map",
                              sort=False, dropna=False)
    wide = wide[list(dict.fromkeys(table3["method"]))]
    wide.columns.name = None
    return wide.rename(columns={"Ours": "Ours (paper)"}).rename_axis(["dataset", "bits"])


def table3_comparison(ours: pd.DataFrame, table3: pd.DataFrame) -> pd.DataFrame:
    """Table 3 (its cells first) with our mAP as ``Ours (replication)`` (and tie-aware),
    ``best baseline``, ``gain (paper)``, ``gain (replication)``, ``replication - paper``."""
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
    """Per (dataset, bits, Table 3 method): ``method_map``, ``paper_improvement`` (the
    paper's Ours minus it) and ``replication_improvement`` (ours minus it; NaN: no run)."""
    paper = _paper_wide(table3)
    mine = ours.set_index(["dataset", "bits"])["map"]
    rows = []
    for (dataset, bits), row in paper.iterrows():
        our = float(mine.get((dataset, bits), math.nan))
        rows += [{"dataset": dataset, "bits": bits, "method": method, "method_map": value,
                  "paper_improvement": row["Ours (paper)"] - value,
                  "replication_improvement": our - value}
                 for method, value in row.items() if method != "Ours (paper)"]
    return pd.DataFrame(rows)


def mean_improvements(improvement: pd.DataFrame) -> pd.DataFrame:
    """:func:`improvements` averaged over the datasets per (method, bits): the text's claims."""
    columns = ["paper_improvement", "replication_improvement"]
    return improvement.groupby(["method", "bits"], sort=False)[columns].mean().reset_index()


def ttests_against_paper(ours: pd.DataFrame, table3: pd.DataFrame,
                         methods: Sequence[str] = ("Semicon", "AMGH")) -> pd.DataFrame:
    """Table 4 with our mAP: ``method - Ours (replication)`` over the cells both have."""
    paper = _paper_wide(table3)
    mine = ours.set_index(["dataset", "bits"])["map"]
    rows = []
    for k, method in enumerate(methods, 1):
        cells = paper[[method]].join(mine.rename("ours"), how="inner").dropna()
        rows.append(ttest_row(f"Comparison {k}", f"{method}–Ours (replication)",
                              cells[method].to_numpy(), cells["ours"].to_numpy()))
    return pd.DataFrame(rows, columns=["comparison", "pair", *TTEST_COLUMNS])


def printed_check(recomputed: pd.DataFrame, printed: pd.DataFrame) -> pd.DataFrame:
    """Recomputed t-tests against the printed table (``load_table(n, as_printed=True)``): per
    statistic, ``comparison``, ``pair``, ``column``, ``printed``, ``recomputed``, ``matches``."""
    source = {"sig_one_sided": "p_one_sided", "sig_two_sided": "p_two_sided"}
    columns = ["mean", "std", "sem", "ci_lower", "ci_upper", "t", "df"] + [
        c for c in printed.columns if c.startswith("sig_")]
    rows = []
    for i in range(len(printed)):
        for column in columns:
            value = float(recomputed.iloc[i][source.get(column, column)])
            cell = str(printed.iloc[i][column])
            rows.append({"comparison": printed.iloc[i]["comparison"],
                         "pair": printed.iloc[i]["pair"], "column": column, "printed": cell,
                         "recomputed": value, "matches": matches_printed(value, cell)})
    return pd.DataFrame(rows)


def side_by_side(ours: pd.DataFrame, paper: pd.DataFrame,
                 keys: Sequence[str] = ("dataset", "bits")) -> pd.DataFrame:
    """The paper's mAP (Tables 5, 6) and ours per ``keys``, with ``replication - paper``,
    over both's rows (the paper's first, in its order)."""
    keys = list(keys)
    left = paper.rename(columns={"dataset": "dataset_name", "dataset_id": "dataset"})
    left = left[[*keys, "map"]].rename(columns={"map": "paper"})
    table = left.merge(ours[[*keys, "map", "map_tie_aware"]], on=keys, how="outer", sort=False)
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


def history_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Each run's per-epoch record: loss, validation mAP (%), seconds."""
    rows = [{"dataset": r.dataset, "bits": r.bits, "label": r.label, "epoch": int(h["epoch"]),
             "loss": h.get("loss", math.nan),
             "val_map": 100.0 * h["val_map"] if "val_map" in h else math.nan,
             "seconds": h.get("seconds", math.nan)}
            for r in records for h in r.metrics.get("history", [])]
    return pd.DataFrame(rows, columns=["dataset", "bits", "label", "epoch", "loss", "val_map",
                                       "seconds"])


def proxy_code_table(class_counts: dict[str, int], bits: Sequence[int], iterations: int = 15,
                     seed: int = 0) -> tuple[pd.DataFrame, dict[tuple[str, int], np.ndarray]]:
    """The class proxy codes (FISH) of each dataset (name -> classes) and code length: a row
    per (dataset, bits) of :func:`code_diagnostics`' figures, and the (C, bits) codes."""
    from fusnet.models.proxy_codes import class_proxy_codes, code_diagnostics

    bad = {k: v for k, v in class_counts.items()
           if not isinstance(v, int) or isinstance(v, bool) or v < 2}
    if not class_counts or bad:
        raise ConfigError(f"class_counts must map names to integers >= 2, got {class_counts}")
    distances = ("hamming_min", "hamming_mean", "hamming_max", "hamming_std")
    rows, codes = [], {}
    for name, count in class_counts.items():
        for k in bits:
            p = class_proxy_codes(int(count), int(k), iterations, seed=seed)  # (C, k)
            d = code_diagnostics(p)
            codes[(name, int(k))] = p.numpy()
            rows.append({"dataset": name, "classes": int(count), "bits": int(k),
                         **{key: d[key] for key in distances},
                         "hamming_mean_normalised": d["hamming_mean"] / k,
                         **{key: d[key] for key in ("collisions", "unique_codes",
                                                    "bit_balance_max_abs")}})
    return pd.DataFrame(rows), codes


def hamming_matrix(codes: np.ndarray) -> np.ndarray:
    """(C, C) Hamming distances between the rows of a {-1, +1} code matrix (C, k)."""
    c = np.asarray(codes, dtype=np.float64)
    return np.rint(0.5 * (c.shape[1] - c @ c.T)).astype(np.int64)


def to_markdown(table: pd.DataFrame) -> str:
    """A pipe table of ``table`` with its index as leading columns; floats to 2 decimals."""
    flat = table.reset_index()

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(str(c) for c in flat.columns) + " |", "|" + "---|" * len(flat.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in flat.itertuples(index=False)]
    return "\n".join(lines)
