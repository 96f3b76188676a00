"""Baselines side by side (notebook 09): every method on the same data, backbone and budget.
Each run is an ordinary one with ``method`` and ``seed`` changed (and the method's own
``method_changes``), so Multi-FusNet's seed-0 runs are the other notebooks'.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from fusnet.errors import ConfigError
from fusnet.experiments.runs import RunRecord, RunRequest
from fusnet.experiments.stats import TTEST_COLUMNS, mean_and_spread, ttest_row
from fusnet.experiments.tables import runs_frame
from fusnet.methods.base import NETWORK_DATABASE

logger = logging.getLogger(__name__)

REFERENCE_METHOD = "multifusnet"


def all_methods() -> list[str]:
    """``"multifusnet"`` and every registered baseline, in registration order."""
    from fusnet.methods import METHODS

    return [REFERENCE_METHOD, *METHODS]


def check_method_changes(method_changes: Mapping[str, Any], methods: Sequence[str],
                         what: str = "method_changes") -> None:
    """Refuse settings for a name that is not a method (a misspelt one would be ignored)."""
    unknown = sorted(set(method_changes) - set(all_methods()))
    if unknown:
        raise ConfigError(f"{what} names {unknown}, not methods; choose from {all_methods()}")
    unused = sorted(set(method_changes) - set(methods))
    if unused:
        logger.info("%s for %s: not in this run's methods %s", what, unused, list(methods))


def method_requests(datasets: Iterable[str], bits: Iterable[int], methods: Sequence[str],
                    seeds: Sequence[int],
                    method_changes: Mapping[str, Mapping[str, Any]] | None = None,
                    method_bits: Mapping[str, Sequence[int]] | None = None) -> list[RunRequest]:
    """One request per (dataset, bits, method, seed), labelled with the method, with its
    ``method_changes`` (dotted), at its ``method_bits`` (some of ``bits``) where given."""
    bits = [int(k) for k in bits]
    method_changes = method_changes or {}
    check_method_changes(method_changes, methods)
    method_bits = {m: [int(k) for k in ks] for m, ks in (method_bits or {}).items()}
    check_method_changes(method_bits, methods, what="method_bits")
    for method, lengths in method_bits.items():
        if not lengths or set(lengths) - set(bits):
            raise ConfigError(
                f"method_bits[{method!r}] = {lengths}: give some of the notebook's bits {bits}"
            )
    return [
        RunRequest(dataset, k, method,
                   {"method": method, "seed": int(seed), **dict(method_changes.get(method, {}))})
        for dataset in datasets for k in bits for method in methods
        if k in method_bits.get(method, bits)
        for seed in seeds
    ]


def methods_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """``tables.runs_frame`` with ``method``, ``seed`` and ``database`` (codes' source)."""
    records = list(records)
    frame = runs_frame(records).rename(columns={"label": "method"})
    frame.insert(3, "seed", [r.config.seed for r in records])
    frame["database"] = [r.metrics.get("database", NETWORK_DATABASE) for r in records]
    return frame


def seed_summary(frame: pd.DataFrame, value: str = "map") -> pd.DataFrame:
    """Per (dataset, bits, method): mean, std, n (seeds) and the 95% t interval of the mean."""
    rows = []
    for (dataset, bits, method), group in frame.groupby(["dataset", "bits", "method"], sort=False):
        spread = mean_and_spread(group[value].to_numpy())
        rows.append({"dataset": dataset, "bits": bits, "method": method,
                     **{k: spread[k] for k in ("mean", "std", "n", "ci_lower", "ci_upper")}})
    return pd.DataFrame(rows)


def paired_against(frame: pd.DataFrame, reference: str = REFERENCE_METHOD, value: str = "map",
                   unit: str = "seed") -> pd.DataFrame:
    """Paired t-tests ``method − reference`` per dataset and over all ("all"), over the cells
    both ran. ``unit="seed"``: a pair is one seed's difference averaged over the code lengths
    (same split and sampling order); ``"cell"``: each (dataset, bits, seed) (optimistic)."""
    if unit not in ("seed", "cell"):
        raise ValueError(f"unit must be 'seed' or 'cell', got {unit!r}")
    keys = ["dataset", "bits", "seed", "method"]
    if frame.duplicated(keys).any():
        raise ValueError(f"repeated runs for {frame[frame.duplicated(keys)][keys].to_dict('records')}")
    wide = frame.pivot(index=keys[:3], columns="method", values=value)
    if reference not in wide.columns:
        raise ValueError(f"no runs of the reference method {reference!r}")
    methods = [m for m in frame["method"].unique() if m != reference]
    scopes = [(d, wide.xs(d, level="dataset", drop_level=False)) for d in frame["dataset"].unique()]
    if len(scopes) > 1:
        scopes.append(("all", wide))
    rows = []
    for scope, table in scopes:
        for method in methods:
            cells = table[[method, reference]].dropna()
            if unit == "seed":
                cells = cells.groupby(level="seed").mean()
            row = ttest_row(method, f"{method} − {reference}",
                            cells[method].to_numpy(), cells[reference].to_numpy())
            rows.append({"dataset": scope, **row})
    return pd.DataFrame(rows, columns=["dataset", "comparison", "pair", *TTEST_COLUMNS])


def mean_std_table(summary: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """:func:`seed_summary` as text cells ``mean ± std (n)``: methods × (dataset, bits)."""
    cells = summary.assign(cell=[
        f"{m:.{decimals}f} ± {s:.{decimals}f} ({n})" if n > 1 else f"{m:.{decimals}f} (1)"
        for m, s, n in zip(summary["mean"], summary["std"], summary["n"], strict=True)
    ])
    table = cells.pivot(index="method", columns=["dataset", "bits"], values="cell")
    return table.reindex(list(dict.fromkeys(summary["method"]))).fillna("—")  # "—": not run
