"""The headline tables of a profile's results, as markdown, read from the notebooks'
``metrics.json`` (never typed in): the README's results section, for the ``cpu`` profile::

    python -m fusnet.experiments.summary --profile cpu --readme README.md
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
from fusnet.experiments.regimes import regime_seed_means
from fusnet.experiments.tables import to_markdown
from fusnet.experiments.verdicts import CLAIMS, verdict_table

Section = Callable[[dict[str, Any], dict[str, Any]], pd.DataFrame]  # (results, parameters)


def _by(row: str) -> Section:
    """A table of ``results["map"]``: mAP per (dataset, ``row``) and bits."""
    return lambda results, parameters=None: pd.DataFrame(results["map"]).pivot_table(
        index=["dataset", row], columns="bits", values="map", sort=False)


def _regime_means(results: dict[str, Any]) -> pd.DataFrame:
    runs = pd.DataFrame(results["runs"])
    if "seed" not in runs:  # written before notebook 11 ran several seeds
        runs["seed"] = 0
    return regime_seed_means(runs)


def _regimes(results: dict[str, Any], parameters: dict[str, Any] | None = None) -> pd.DataFrame:
    frame = _regime_means(results)
    frame["val / test"] = [
        f"{v:.2f} / {t:.2f}" + ("" if pd.isna(sd) else f" ± {sd:.2f}")
        for v, t, sd in zip(frame["val_map"], frame["test_map"], frame["test_std"], strict=True)
    ]
    frame["train min"] = frame["train_minutes"].round(1)
    return frame.set_index(["dataset", "bits", "regime", "configuration"])[
        ["val / test", "seeds", "train min"]]


_COMPARISON = ["seeds (full)", "baseline: val / test", "full model: val / test",
               "full − baseline, test (paired t over seeds)"]


def _regime_comparison(results: dict[str, Any],
                       parameters: dict[str, Any] | None = None) -> pd.DataFrame:
    """Per (dataset, bits, regime) where the full model (the last of ``configurations``) ran:
    its baseline (the first) or ``not run``, their paired difference; regimes in order."""
    parameters = parameters or {}
    means = _regime_means(results)
    gaps = results.get("full_minus_baseline", {})
    configurations = parameters.get("configurations") or ["baseline", "cascading+fusion+attention"]
    baseline, full = configurations[0], configurations[-1]
    cells = means.set_index(["dataset", "bits", "regime", "configuration"])
    rows = []
    for dataset, bits, regime in dict.fromkeys(zip(means["dataset"], means["bits"],
                                                   means["regime"], strict=True)):
        both = [cells.loc[(dataset, bits, regime, name)] if (dataset, bits, regime, name)
                in cells.index else None for name in (baseline, full)]
        if both[1] is None:
            continue
        gap = gaps.get(f"{dataset}/{bits}/{regime}")
        difference = "—"  # no baseline, or no seed that both arms ran
        if gap is not None:
            p = gap["test_p"]
            shown = "" if p is None or pd.isna(p) else f"p = {p:.2g}, "
            difference = f"{gap['test']:+.2f} ({shown}n = {int(gap['n'])})"
        pair = ["not run" if arm is None else f"{arm['val_map']:.2f} / {arm['test_map']:.2f}"
                for arm in both]
        rows.append({"dataset": dataset, "regime": regime, "bits": bits,
                     **dict(zip(_COMPARISON, [int(both[1]["seeds"]), *pair, difference],
                                strict=True))})
    frame = pd.DataFrame(rows, columns=["dataset", "regime", "bits", *_COMPARISON])
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


def _baselines(results: dict[str, Any], parameters: dict[str, Any] | None = None) -> pd.DataFrame:
    summary = pd.DataFrame(results["mean_std"])
    tests = pd.DataFrame(results["paired_ttests"]).set_index(["dataset", "comparison"])
    rows = []
    for record in summary.to_dict("records"):
        key = (record["dataset"], record["method"])
        spread = f" ± {record['std']:.2f}" if record["n"] > 1 else ""
        rows.append({
            "dataset": record["dataset"], "bits": record["bits"], "method": record["method"],
            "mAP: mean ± std (seeds)": f"{record['mean']:.2f}{spread} ({record['n']})",
            "− Multi-FusNet (per dataset, bits averaged; paired t over seeds, p two-sided)":
                _paired(tests.loc[key] if key in tests.index else None),
        })
    return pd.DataFrame(rows).set_index(["dataset", "bits", "method"])


SECTIONS: list[tuple[str, str, Section]] = [
    ("01_main_results", "Main results (Table 3 protocol): test mAP (%), ties by index",
     _by("label")),
    ("02_generalisation", "Generalisation (Table 5 protocol): test mAP (%)", _by("label")),
    ("03_ablation", "Ablation (Table 6): test mAP (%) per configuration", _by("configuration")),
    ("04_attention", "Attention in the fusion module (Fig. 9): test mAP (%)", _by("attention")),
    ("09_baselines", "Baselines side by side, same data, backbone and budget", _baselines),
    ("11_regimes", "Training regimes: Table 6 row 1 (baseline) vs the full model, "
     "validation / test mAP (%), means over seeds (± the test sd)", _regimes),
    ("11_regimes", "Training regimes: the full model against its baseline, mAP (%) means "
     "over seeds, the test difference paired by seed", _regime_comparison),
]  # (notebook, title, table builder from its results), in README order

VERDICTS_TITLE = ("Verdicts: each claim of the paper against our runs (ours − comparator, "
                  "test mAP points; paired t, two-sided; head: the full model's)")


def headline_markdown(profile: str, root: Path | None = None, link_root: Path | None = None) -> str:
    """Each :data:`SECTIONS` table with outputs for ``profile`` under ``root`` (default
    ``<repo>/results``), then the verdicts; links relative to ``link_root`` (the repo's)."""
    root = root or REPO_ROOT / "results"
    link_root = link_root or REPO_ROOT
    parts, missing = [], set()
    payloads: dict[str, dict[str, Any]] = {}
    for notebook, title, build in SECTIONS:
        folder = root / notebook / profile
        metrics = folder / "metrics.json"
        link = relative_to_or_as_is(folder.resolve(), link_root.resolve())
        if not metrics.is_file():
            if notebook not in missing:
                parts.append(f"*{notebook}: no outputs for the {profile} profile yet.*\n")
                missing.add(notebook)
            continue
        payload = payloads.setdefault(notebook, json.loads(metrics.read_text()))
        table = build(payload["results"], payload.get("parameters", {}))
        parts.append(f"**{title}** ([{notebook}]({link}/{notebook}.ipynb))\n\n{to_markdown(table)}\n")
    verdicts = verdict_table(payloads)
    if len(verdicts):
        parts.append(f"**{VERDICTS_TITLE}**\n\n{to_markdown(verdicts)}\n")
    else:
        sources = sorted({n for claim in CLAIMS for n in claim.notebooks})
        parts.append(f"*verdicts: none of {', '.join(sources)} has outputs for the {profile} "
                     "profile yet.*\n")
    return "\n".join(parts)


def with_results_block(readme: str, profile: str, markdown: str) -> str:
    """``readme`` with ``markdown`` between ``<!-- results:<profile> -->`` and its end."""
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
