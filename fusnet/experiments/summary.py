"""The headline tables of a profile's results, as markdown, read from the notebooks' outputs.

The README's results section is this module's output for the ``cpu`` profile, so every
number there comes from a ``metrics.json`` a notebook wrote (never typed in)::

    python -m fusnet.experiments.summary --profile cpu          # markdown on stdout
    python -m fusnet.experiments.summary --profile cpu --readme README.md   # the block in place

Each table links the notebook folder it was read from. A notebook whose outputs are
missing is skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from fusnet.experiments.config import REPO_ROOT, relative_to_or_as_is

Section = Callable[[dict[str, Any], dict[str, Any]], pd.DataFrame]
"""A table builder: (the notebook's ``results``, its ``parameters``) -> the table."""


def _pivot(records: list[dict[str, Any]], row: str, value: str = "map") -> pd.DataFrame:
    frame = pd.DataFrame(records)
    return frame.pivot_table(index=["dataset", row], columns="bits", values=value, sort=False)


def _main_results(results: dict[str, Any],
                  parameters: dict[str, Any] | None = None) -> pd.DataFrame:
    return _pivot(results["map"], "label")


def _ablation(results: dict[str, Any],
              parameters: dict[str, Any] | None = None) -> pd.DataFrame:
    return _pivot(results["map"], "configuration")


def _attention(results: dict[str, Any],
               parameters: dict[str, Any] | None = None) -> pd.DataFrame:
    return _pivot(results["map"], "attention")


def _regime_means(results: dict[str, Any]) -> pd.DataFrame:
    """Notebook 11's runs averaged over seeds (:func:`regimes.regime_seed_means`)."""
    from fusnet.experiments.regimes import regime_seed_means

    runs = pd.DataFrame(results["runs"])
    if "seed" not in runs:  # written before notebook 11 ran several seeds: one each
        runs["seed"] = 0
    return regime_seed_means(runs)


def _regimes(results: dict[str, Any],
             parameters: dict[str, Any] | None = None) -> pd.DataFrame:
    frame = _regime_means(results)
    frame["val / test"] = [
        f"{v:.2f} / {t:.2f}" + ("" if pd.isna(sd) else f" ± {sd:.2f}")
        for v, t, sd in zip(frame["val_map"], frame["test_map"], frame["test_std"], strict=True)
    ]
    frame["train min"] = frame["train_minutes"].round(1)
    return frame.set_index(["dataset", "bits", "regime", "configuration"])[
        ["val / test", "seeds", "train min"]]


def _regime_comparison(results: dict[str, Any],
                       parameters: dict[str, Any] | None = None) -> pd.DataFrame:
    """One row per (dataset, bits, regime) where the full model ran: its baseline beside it
    (``not run`` where the regime trains the full model alone) and their paired difference.
    The baseline and the full model are the first and last of the notebook's
    ``configurations`` and the regimes come in its ``regimes`` order (without
    ``parameters``: Table 6's first and last rows, regimes as they first appear)."""
    parameters = parameters or {}
    means = _regime_means(results)
    gaps = results.get("full_minus_baseline", {})
    configurations = parameters.get("configurations") or ["baseline", "cascading+fusion+attention"]
    baseline, full = configurations[0], configurations[-1]
    cells = means.set_index(["dataset", "bits", "regime", "configuration"])
    rows = []
    for (dataset, bits, regime), _ in means.groupby(["dataset", "bits", "regime"], sort=False):
        if (dataset, bits, regime, full) not in cells.index:
            continue
        both = [cells.loc[(dataset, bits, regime, name)] if (dataset, bits, regime, name)
                in cells.index else None for name in (baseline, full)]
        gap = gaps.get(f"{dataset}/{bits}/{regime}")
        difference = "—"  # no baseline, or no seed that both arms ran
        if gap is not None:
            p = gap["test_p"]
            shown = "" if p is None or pd.isna(p) else f"p = {p:.2g}, "
            difference = f"{gap['test']:+.2f} ({shown}n = {int(gap['n'])})"
        rows.append({
            "dataset": dataset, "regime": regime, "bits": bits,
            "seeds (full)": int(both[1]["seeds"]),
            "baseline: val / test": "not run" if both[0] is None else
            f"{both[0]['val_map']:.2f} / {both[0]['test_map']:.2f}",
            "full model: val / test": f"{both[1]['val_map']:.2f} / {both[1]['test_map']:.2f}",
            "full − baseline, test (paired t over seeds)": difference,
        })
    frame = pd.DataFrame(rows, columns=["dataset", "regime", "bits", "seeds (full)",
                                        "baseline: val / test", "full model: val / test",
                                        "full − baseline, test (paired t over seeds)"])
    order = {name: i for i, name in enumerate(dict.fromkeys([*parameters.get("regimes", []),
                                                             *frame["regime"]]))}
    frame = frame.sort_values(["dataset", "regime", "bits"], key=lambda c: c.map(order)
                              if c.name == "regime" else c, kind="stable")
    return frame.set_index(["dataset", "regime", "bits"])


def _paired(test: pd.Series | None) -> str:
    if test is None:
        return ""
    if pd.isna(test["mean"]):
        return f"n = {int(test['n'])}: too few pairs"
    return f"{test['mean']:+.2f} (p = {test['p_two_sided']:.2g}, n = {int(test['n'])} seeds)"


def _baselines(results: dict[str, Any],
               parameters: dict[str, Any] | None = None) -> pd.DataFrame:
    summary = pd.DataFrame(results["mean_std"])
    tests = pd.DataFrame(results["paired_ttests"]).set_index(["dataset", "comparison"])
    rows = []
    for record in summary.to_dict("records"):
        key = (record["dataset"], record["method"])
        spread = f" ± {record['std']:.2f}" if record["n"] > 1 else ""
        rows.append({
            "dataset": record["dataset"],
            "bits": record["bits"],
            "method": record["method"],
            "mAP: mean ± std (seeds)": f"{record['mean']:.2f}{spread} ({record['n']})",
            "− Multi-FusNet (per dataset, bits averaged; paired t over seeds, p two-sided)": _paired(
                tests.loc[key] if key in tests.index else None
            ),
        })
    return pd.DataFrame(rows).set_index(["dataset", "bits", "method"])


def to_markdown(table: pd.DataFrame) -> str:
    """A pipe table of ``table`` with its index as leading columns; floats to 2 decimals."""
    flat = table.reset_index()
    header = [str(c) for c in flat.columns]

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in flat.itertuples(index=False)]
    return "\n".join(lines)


SECTIONS: list[tuple[str, str, Section]] = [
    ("01_main_results", "Main results (Table 3 protocol): test mAP (%), ties by index",
     _main_results),
    ("02_generalisation", "Generalisation (Table 5 protocol): test mAP (%)", _main_results),
    ("03_ablation", "Ablation (Table 6): test mAP (%) per configuration", _ablation),
    ("04_attention", "Attention in the fusion module (Fig. 9): test mAP (%)", _attention),
    ("09_baselines", "Baselines side by side, same data, backbone and budget", _baselines),
    ("11_regimes", "Training regimes: Table 6 row 1 (baseline) vs the full model, "
     "validation / test mAP (%), means over seeds (± the test sd)", _regimes),
    ("11_regimes", "Training regimes: the full model against its baseline, mAP (%) means "
     "over seeds, the test difference paired by seed", _regime_comparison),
]
"""(notebook, title, table builder from its ``metrics.json`` results), in README order."""


def headline_markdown(profile: str, root: Path | None = None, link_root: Path | None = None) -> str:
    """Markdown: the table of each :data:`SECTIONS` entry whose notebook has outputs for
    ``profile``, and one line for each notebook that has none.

    Args:
        profile: the profile folder name (``cpu``).
        root: the results folder (default ``<repo>/results``).
        link_root: links are made relative to this folder (default the repository root).
    """
    root = root or REPO_ROOT / "results"
    link_root = link_root or REPO_ROOT
    parts, missing = [], set()
    for notebook, title, build in SECTIONS:
        folder = root / notebook / profile
        metrics = folder / "metrics.json"
        link = relative_to_or_as_is(folder.resolve(), link_root.resolve())
        if not metrics.is_file():
            if notebook not in missing:
                parts.append(f"*{notebook}: no outputs for the {profile} profile yet.*\n")
                missing.add(notebook)
            continue
        payload = json.loads(metrics.read_text())
        table = build(payload["results"], payload.get("parameters", {}))
        parts.append(f"**{title}** ([{notebook}]({link}/{notebook}.ipynb))\n\n{to_markdown(table)}\n")
    return "\n".join(parts)


def with_results_block(readme: str, profile: str, markdown: str) -> str:
    """``readme`` with the text between ``<!-- results:<profile> -->`` and
    ``<!-- /results:<profile> -->`` replaced by ``markdown``.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    start, end = f"<!-- results:{profile} -->", f"<!-- /results:{profile} -->"
    i = readme.find(start)
    j = readme.find(end, i + len(start)) if i >= 0 else -1
    if i < 0 or j < i:
        raise ValueError(f"the README has no '{start}' ... '{end}' block; add the two markers "
                         "where the tables belong")
    return readme[:i + len(start)] + "\n" + markdown.strip("\n") + "\n\n" + readme[j:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--root", type=Path, help="results folder (default <repo>/results)")
    parser.add_argument("--readme", type=Path,
                        help="rewrite this file's results block instead of printing")
    args = parser.parse_args(argv)
    markdown = headline_markdown(args.profile, args.root)
    if args.readme is None:
        sys.stdout.write(markdown)
    else:
        text = args.readme.read_text(encoding="utf-8")
        args.readme.write_text(with_results_block(text, args.profile, markdown), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
