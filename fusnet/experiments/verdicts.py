"""The paper's claims against our runs: one verdict per claim, comparison, dataset and head,
read from the notebooks' ``metrics.json``, so the README's verdict table regenerates with the
results. Effect (:func:`paired_effect`): ours minus the comparator in mAP points; p: a
two-sided paired t-test; the word: :func:`verdict`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from fusnet.experiments.stats import paired_ttest

ALPHA = 0.05  # the two-sided significance level of a verdict
GATE = "model.lower_level_gate"
HEADS = {False: "paper", True: "gated (ours)"}  # the full model's head by GATE (README)


@dataclass(frozen=True)
class Claim:
    """A claim: the notebooks whose runs test it, their results' column naming the arms, and
    the ``anchor`` arm compared with every other, as ours (``anchor − other``) or not."""

    text: str
    notebooks: tuple[str, ...]
    arm: str
    anchor: str
    anchor_is_ours: bool


CLAIMS: tuple[Claim, ...] = (
    Claim("1. each module adds to the baseline (Tables 6, 7)", ("03_ablation", "11_regimes"),
          "configuration", "baseline", anchor_is_ours=False),
    Claim("2. ECA is the best attention in the fusion module (Fig. 9)", ("04_attention",),
          "attention", "eca", anchor_is_ours=True),
    Claim("3. Multi-FusNet beats the hashing baselines (Table 3)", ("09_baselines",),
          "method", "multifusnet", anchor_is_ours=True),
)  # the paper's claims the cpu notebooks measure, in the README's order

COLUMNS = ["claim", "dataset", "comparison", "head", "from", "bits",
           "effect, mAP points (mean ± sd)", "paired over", "p (two-sided)", "verdict"]


@dataclass(frozen=True)
class Effect:
    """Ours minus the comparator over ``n`` pairs (``"seed"`` or ``"cell"``), with code lengths."""

    mean: float
    sd: float
    n: int
    unit: str
    p: float
    bits: tuple[int, ...]

    @property
    def verdict(self) -> str:
        return verdict(self.mean, self.p, self.n)


def verdict(effect: float, p: float, n: int) -> str:
    """``holds`` (effect > 0, p < :data:`ALPHA`), ``reversed`` (effect < 0, p < ALPHA),
    ``not reproduced`` otherwise, ``not tested (n = 1)`` with a single pair (no p)."""
    if n < 2:
        return f"not tested (n = {n})"
    if not math.isnan(p) and p < ALPHA and effect != 0:
        return "holds" if effect > 0 else "reversed"
    return "not reproduced"


def paired_effect(ours: pd.DataFrame, other: pd.DataFrame) -> Effect | None:
    """:class:`Effect` of ``ours`` against ``other`` (columns ``bits``, ``seed``, ``map``),
    paired by seed where both ran two or more seeds at every code length they share (each
    seed's mean over those lengths), else by code length (each cell's mean over its seeds,
    as Table 7 pairs cells); None where they share no (code length, seed)."""
    a = ours.groupby(["bits", "seed"])["map"].mean().dropna()
    b = other.groupby(["bits", "seed"])["map"].mean().dropna()
    both = a.index.intersection(b.index)
    if both.empty:
        return None
    bits = sorted({int(k) for k in both.get_level_values("bits")})
    seeds = set.intersection(*({s for k, s in both if k == length} for length in bits))
    if len(seeds) >= 2:
        keep = pd.MultiIndex.from_tuples([(k, s) for k in bits for s in sorted(seeds)],
                                         names=["bits", "seed"])
        unit, level = "seed", "seed"
    else:
        keep, unit, level = both, "cell", "bits"
    x = a.loc[keep].groupby(level=level).mean()
    y = b.loc[keep].groupby(level=level).mean()
    if len(x) < 2:
        return Effect(float((x - y).mean()), math.nan, len(x), unit, math.nan, tuple(bits))
    test = paired_ttest(x.to_numpy(), y.to_numpy())
    return Effect(test.mean, test.std, test.n, unit, test.p_two_sided, tuple(bits))


def _head(settings: Mapping[str, Any], overrides: Mapping[str, Any]) -> str:
    return HEADS[bool(settings.get(GATE, overrides.get(GATE, False)))]


def _arm_frames(notebook: str,
                payload: Mapping[str, Any]) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """(where from, head, runs) of one notebook; notebook 11's per regime that trains as the
    recipe does but for the head (``frozen``: the paper's head, ``frozen-gate`` ours)."""
    results, parameters = payload["results"], payload.get("parameters", {})
    overrides, regimes = parameters.get("overrides", {}), notebook == "11_regimes"
    runs = pd.DataFrame(results["runs" if regimes else "map"]).rename(columns={"test_map": "map"})
    if "seed" not in runs:  # one seed: the recipe's
        runs["seed"] = parameters.get("seed", 0)
    if not regimes:
        yield notebook, _head({}, overrides), runs
        return
    for regime, settings in parameters.get("regimes", {}).items():
        if set(settings) <= {"mode", GATE} and settings.get("mode") == parameters.get("mode"):
            yield f"{notebook} ({regime})", _head(settings, overrides), runs[runs["regime"] == regime]


def p_text(p: float) -> str:
    """``p`` to two significant digits, more where rounding would cross :data:`ALPHA`."""
    if math.isnan(p):
        return "—"
    for digits in (2, 3, 4):
        text = f"{p:.{digits}g}"
        if (float(text) < ALPHA) == (p < ALPHA):
            return text
    return f"< {ALPHA:g}"  # just below it


def _cell(effect: Effect) -> dict[str, str]:
    spread = "" if math.isnan(effect.sd) else f" ± {effect.sd:.2f}"
    return {"bits": ", ".join(map(str, effect.bits)),
            "effect, mAP points (mean ± sd)": f"{effect.mean:+.2f}{spread}",
            "paired over": f"n = {effect.n} {effect.unit}{'s' if effect.n != 1 else ''}",
            "p (two-sided)": p_text(effect.p),
            "verdict": effect.verdict}


def verdict_table(payloads: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Every :data:`CLAIMS` comparison the notebooks' ``metrics.json`` payloads measure:
    a row per claim, dataset, source and comparison, indexed by claim, dataset, comparison."""
    rows = []
    for claim in CLAIMS:
        for notebook in (n for n in claim.notebooks if n in payloads):
            for source, head, frame in _arm_frames(notebook, payloads[notebook]):
                for dataset, runs in frame.groupby("dataset", sort=False):
                    arms = dict(list(runs.groupby(claim.arm, sort=False)))
                    anchor = arms.pop(claim.anchor, None)
                    for name, other in arms.items() if anchor is not None else ():
                        pair = [(claim.anchor, anchor), (name, other)]
                        (a, ours), (b, theirs) = pair if claim.anchor_is_ours else pair[::-1]
                        effect = paired_effect(ours, theirs)
                        if effect is not None:
                            rows.append({"claim": claim.text, "dataset": dataset,
                                         "comparison": f"{a} − {b}", "head": head,
                                         "from": source, **_cell(effect)})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    order = {name: i for i, name in enumerate(dict.fromkeys(frame["dataset"]))}
    frame = frame.sort_values(["claim", "dataset"], key=lambda c: c.map(order)
                              if c.name == "dataset" else c, kind="stable")
    return frame.set_index(["claim", "dataset", "comparison"])
