"""The verdict table (fusnet.experiments.verdicts) on small hand-made runs and on the
committed cpu results."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from fusnet.experiments.config import REPO_ROOT
from fusnet.experiments.verdicts import p_text, paired_effect, verdict, verdict_table


def _runs(arm: str, maps: dict[tuple[int, int], float]) -> pd.DataFrame:
    """Runs of one arm: (bits, seed) -> mAP."""
    return pd.DataFrame([{"bits": k, "seed": s, "map": m, "arm": arm}
                         for (k, s), m in maps.items()])


def _payload(rows: list[dict], gate: bool = True, seed: int = 0) -> dict:
    return {"results": {"map": rows},
            "parameters": {"seed": seed, "overrides": {"model.lower_level_gate": gate}}}


def test_the_word_follows_sign_and_p():
    assert verdict(2.0, 0.01, 3) == "holds"
    assert verdict(-2.0, 0.01, 3) == "reversed"
    assert verdict(2.0, 0.2, 3) == verdict(-2.0, 0.06, 2) == "not reproduced"
    assert verdict(0.0, math.nan, 3) == "not reproduced"  # all differences zero: no t
    assert verdict(5.0, math.nan, 1) == "not tested (n = 1)"


def test_several_seeds_pair_by_seed_over_the_code_lengths_both_ran():
    ours = _runs("a", {(12, 0): 50.0, (12, 1): 52.0, (12, 2): 51.0,
                       (48, 0): 70.0, (48, 1): 73.0, (48, 2): 71.0, (24, 0): 60.0})
    other = _runs("b", {(12, 0): 40.0, (12, 1): 41.0, (12, 2): 41.5,
                        (48, 0): 60.0, (48, 1): 62.0, (48, 2): 61.5})
    effect = paired_effect(ours, other)
    # per seed, the mean over 12 and 48 bits: 10, 11, 9.5 -> mean 10.17
    assert effect.unit == "seed" and effect.n == 3 and effect.bits == (12, 48)
    assert effect.mean == pytest.approx((10 + 11 + 9.5) / 3)
    assert effect.sd == pytest.approx(pd.Series([10, 11, 9.5]).std())
    assert effect.p < 0.05 and effect.verdict == "holds"
    reverse = paired_effect(other, ours)
    assert reverse.mean == pytest.approx(-effect.mean) and reverse.verdict == "reversed"


def test_one_seed_pairs_by_code_length_and_one_pair_is_not_tested():
    ours = _runs("a", {(12, 0): 40.0, (48, 0): 76.0})
    other = _runs("b", {(12, 0): 44.0, (48, 0): 74.0})
    effect = paired_effect(ours, other)
    assert (effect.unit, effect.n, effect.bits) == ("cell", 2, (12, 48))
    assert effect.mean == pytest.approx(-1.0) and effect.sd == pytest.approx(6 / math.sqrt(2))
    assert effect.verdict == "not reproduced"
    single = paired_effect(_runs("a", {(48, 0): 76.0}), other)
    assert single.n == 1 and math.isnan(single.p) and math.isnan(single.sd)
    assert single.verdict == "not tested (n = 1)"
    assert paired_effect(_runs("a", {(32, 0): 1.0}), other) is None  # nothing shared


def test_p_is_not_rounded_across_the_threshold():
    assert p_text(0.049755) == "0.0498" and p_text(0.0501) == "0.05"
    assert p_text(9e-5) == "9e-05" and p_text(math.nan) == "—"


def test_the_table_names_heads_comparisons_and_units():
    ablation = [{"dataset": "d", "bits": k, "configuration": c, "map": m}
                for k, c, m in [(12, "baseline", 40.0), (12, "cascading", 45.0),
                                (48, "baseline", 70.0), (48, "cascading", 76.0)]]
    methods = [{"dataset": "d", "bits": 48, "method": m, "seed": s, "map": v}
               for m, maps in [("multifusnet", [60, 62, 61]), ("dpsh", [70, 71, 73])]
               for s, v in enumerate(maps)]
    regimes = {"results": {"runs": [
        {"dataset": "d", "bits": 12, "regime": r, "configuration": c, "seed": 0, "test_map": m}
        for r, c, m in [("frozen", "baseline", 40.0), ("frozen", "cascading", 30.0),
                        ("top2", "baseline", 50.0), ("top2", "cascading", 55.0)]]},
        "parameters": {"mode": "frozen", "overrides": {"model.lower_level_gate": True},
                       "regimes": {"frozen": {"mode": "frozen", "model.lower_level_gate": False},
                                   "top2": {"mode": "top"}}}}
    table = verdict_table({"03_ablation": _payload(ablation), "09_baselines": _payload(methods),
                           "11_regimes": regimes}).reset_index()
    assert table["comparison"].tolist() == ["cascading − baseline", "cascading − baseline",
                                            "multifusnet − dpsh"]
    assert table["from"].tolist() == ["03_ablation", "11_regimes (frozen)", "09_baselines"]
    assert table["head"].tolist() == ["gated (ours)", "paper", "gated (ours)"]
    assert table["paired over"].tolist() == ["n = 2 cells", "n = 1 cell", "n = 3 seeds"]
    assert table["effect, mAP points (mean ± sd)"].tolist()[:2] == ["+5.50 ± 0.71", "-10.00"]
    assert table["verdict"].tolist() == ["not reproduced", "not tested (n = 1)", "reversed"]
    assert verdict_table({}).empty


def test_the_committed_table_agrees_with_the_readme_tables():
    """Hand-checked rows: Table 7's replication (03) and notebook 09's paired tests."""
    payloads = {n: json.loads((REPO_ROOT / "results" / n / "cpu" / "metrics.json").read_text())
                for n in ("03_ablation", "04_attention", "09_baselines", "11_regimes")}
    table = verdict_table(payloads)
    full = table.xs(("cub200", "cascading+fusion+attention − baseline"), level=(1, 2))
    ours = full[full["from"] == "03_ablation"].iloc[0]
    line1 = next(r for r in payloads["03_ablation"]["results"]["table7_replication"]
                 if r["pair"] == "Line1 - Line5")  # baseline − full, over the two cells
    assert ours["effect, mAP points (mean ± sd)"] == f"{-line1['mean']:+.2f} ± {line1['std']:.2f}"
    assert ours["p (two-sided)"] == f"{line1['p_two_sided']:.2g}" and ours["head"] == "gated (ours)"
    assert full[full["from"] == "11_regimes (frozen)"].iloc[0]["head"] == "paper"
    tests = [t for t in payloads["09_baselines"]["results"]["paired_ttests"]
             if t["dataset"] != "all"]  # method − multifusnet, per dataset
    assert len(tests) == 10
    for test in tests:
        row = table.loc[(table.index.get_level_values(1) == test["dataset"])
                        & (table.index.get_level_values(2) == f"multifusnet − {test['comparison']}")]
        assert row["effect, mAP points (mean ± sd)"].iloc[0].startswith(f"{-test['mean']:+.2f}")
        assert row["p (two-sided)"].iloc[0] == p_text(test["p_two_sided"])
