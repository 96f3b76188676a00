"""Notebook 09's summaries: requests per (dataset, bits, method, seed), mean ± spread, paired tests."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from fusnet.errors import ConfigError
from fusnet.experiments import baselines


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for dataset in ("cub200", "flowers17"):
        for bits in (12, 48):
            for seed in (0, 1, 2):
                reference = 60 + bits / 4 + rng.normal()
                rows.append({"dataset": dataset, "bits": bits, "method": "multifusnet",
                             "seed": seed, "map": reference})
                rows.append({"dataset": dataset, "bits": bits, "method": "dpsh",
                             "seed": seed, "map": reference - 5 + rng.normal()})
    return pd.DataFrame(rows)


def test_method_requests_cover_the_grid_and_apply_method_changes():
    requests = baselines.method_requests(
        ["cub200"], [12, 48], ["multifusnet", "dpsh"], [0, 1],
        {"dpsh": {"optim.momentum": 0.0}},
    )
    assert len(requests) == 8
    dpsh = [r for r in requests if r.label == "dpsh"]
    assert all(r.changes["optim.momentum"] == 0.0 and r.changes["method"] == "dpsh" for r in dpsh)
    assert {r.changes["seed"] for r in dpsh} == {0, 1}
    # Multi-FusNet's seed-0 request changes nothing the other notebooks' runs lack.
    first = requests[0]
    assert first.label == "multifusnet" and first.changes == {"method": "multifusnet", "seed": 0}


def test_seed_summary_is_mean_and_sample_std_over_seeds():
    frame = _frame()
    summary = baselines.seed_summary(frame)
    assert len(summary) == 8 and set(summary["n"]) == {3}
    cell = frame[(frame.dataset == "cub200") & (frame.bits == 48) & (frame.method == "dpsh")]["map"]
    row = summary[(summary.dataset == "cub200") & (summary.bits == 48) & (summary.method == "dpsh")]
    assert row["mean"].item() == pytest.approx(cell.mean())
    assert row["std"].item() == pytest.approx(cell.std(ddof=1))
    assert row["ci_lower"].item() < cell.mean() < row["ci_upper"].item()


def test_paired_against_pairs_seeds_averaged_over_bits_or_every_cell():
    frame = _frame()
    tests = baselines.paired_against(frame)  # unit="seed"
    assert list(tests["dataset"]) == ["cub200", "flowers17", "all"]
    assert list(tests["n"]) == [3, 3, 3]
    cub = frame[frame.dataset == "cub200"].pivot_table(
        index=["bits", "seed"], columns="method", values="map")
    per_seed = cub.groupby(level="seed").mean()
    expected = sps.ttest_rel(per_seed["dpsh"], per_seed["multifusnet"])
    row = tests.iloc[0]
    assert row["mean"] == pytest.approx((per_seed["dpsh"] - per_seed["multifusnet"]).mean())
    assert row["t"] == pytest.approx(expected.statistic)
    assert row["p_two_sided"] == pytest.approx(expected.pvalue)
    assert row["mean"] < 0  # dpsh was built 5 points below
    cells = baselines.paired_against(frame, unit="cell")
    assert list(cells["n"]) == [6, 6, 12]
    flat = sps.ttest_rel(cub["dpsh"], cub["multifusnet"])
    assert cells.iloc[0]["t"] == pytest.approx(flat.statistic)


def test_paired_against_refuses_bad_input_and_reports_too_few_pairs():
    frame = _frame()
    with pytest.raises(ValueError, match="reference"):
        baselines.paired_against(frame[frame.method != "multifusnet"])
    with pytest.raises(ValueError, match="repeated"):
        baselines.paired_against(pd.concat([frame, frame.iloc[:1]]))
    with pytest.raises(ValueError, match="unit"):
        baselines.paired_against(frame, unit="bits")
    one_seed = frame[(frame.dataset == "cub200") & (frame.seed == 0)]
    row = baselines.paired_against(one_seed).iloc[0]
    assert row["n"] == 1 and math.isnan(row["t"])


def test_method_changes_must_name_methods():
    with pytest.raises(ConfigError, match="dsph"):
        baselines.method_requests(["cub200"], [12], ["dpsh"], [0], {"dsph": {"optim.lr": 0.1}})
    # Settings for a method that is known but not run are allowed (a profile lists them all).
    assert len(baselines.method_requests(["cub200"], [12], ["dpsh"], [0], {"adsh": {}})) == 1


def test_headline_baselines_table_handles_too_few_pairs():
    from fusnet.experiments.summary import _baselines

    frame = _frame().query("seed == 0")
    results = {
        "mean_std": baselines.seed_summary(frame).to_dict("records"),
        "paired_ttests": baselines.paired_against(frame).to_dict("records"),
    }
    table = _baselines(results)
    cells = table.iloc[:, 1].tolist()
    assert "n = 1: too few pairs" in cells and "" in cells  # the reference's own row is blank
    assert table.columns[0] == "mAP: mean ± std (seeds)"


def test_mean_std_table_cells_say_how_many_seeds():
    summary = baselines.seed_summary(_frame())
    table = baselines.mean_std_table(summary, decimals=1)
    assert list(table.index) == ["multifusnet", "dpsh"]
    assert table.loc["dpsh", ("cub200", 12)].endswith("(3)") and " ± " in table.loc["dpsh", ("cub200", 12)]
    single = baselines.mean_std_table(baselines.seed_summary(_frame().query("seed == 0")))
    assert single.loc["dpsh", ("cub200", 12)].endswith("(1)") and "±" not in single.loc["dpsh", ("cub200", 12)]


def test_all_methods_are_multifusnet_and_the_registered_baselines():
    from fusnet.methods import METHODS

    assert baselines.all_methods() == ["multifusnet", *METHODS]


def test_method_bits_run_a_method_at_some_code_lengths_only():
    requests = baselines.method_requests(
        ["cub200", "flowers17"], [12, 48], ["multifusnet", "semicon"], [0, 1],
        method_bits={"semicon": [48]},
    )
    semicon = [r for r in requests if r.label == "semicon"]
    assert len(requests) == 12 and {r.bits for r in semicon} == {48} and len(semicon) == 4
    for bad, match in (({"semicn": [48]}, "semicn"), ({"semicon": [24]}, "24"), ({"semicon": []}, "semicon")):
        with pytest.raises(ConfigError, match=match):
            baselines.method_requests(["cub200"], [12, 48], ["semicon"], [0], method_bits=bad)


def test_paired_against_a_method_with_fewer_code_lengths_pairs_the_common_cells():
    frame = _frame()
    frame = frame[(frame.method == "multifusnet") | (frame.bits == 48)]  # dpsh at 48 bits only
    row = baselines.paired_against(frame).iloc[0]
    cub = frame[(frame.dataset == "cub200") & (frame.bits == 48)].pivot(
        index="seed", columns="method", values="map")
    assert row["n"] == 3
    assert row["mean"] == pytest.approx((cub["dpsh"] - cub["multifusnet"]).mean())
    table = baselines.mean_std_table(baselines.seed_summary(frame))
    assert table.loc["dpsh", ("cub200", 12)] == "—"
