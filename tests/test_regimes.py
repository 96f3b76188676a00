"""The regime comparison's naming and run requests (fusnet.experiments.regimes)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from fusnet.errors import ConfigError
from fusnet.experiments.regimes import regime_figure, regime_name, regime_requests


def _config(mode: str, **data_and_model) -> dict:
    return {
        "mode": mode, "top_stages": 2,
        "data": {k: v for k, v in data_and_model.items() if k in ("augment", "cached_views")},
        "model": {k: v for k, v in data_and_model.items()
                  if k in ("level_dropout", "level_pool", "lower_level_gate", "backbone")},
    }


@pytest.mark.parametrize(("config", "name"), [
    (_config("frozen"), "frozen"),
    (_config("full", augment="mild"), "full-mild"),
    (_config("top"), "top2"),
    (_config("top", cached_views=4), "top2-views4"),
    (_config("top", cached_views=4, level_dropout=0.5), "top2-views4-ld0.5"),
    (_config("top", level_dropout=0.0), "top2"),
    (_config("top", cached_views=4, level_pool="avgmax"), "top2-views4-avgmaxpool"),
    (_config("top", cached_views=4, level_pool="max", lower_level_gate=True), "top2-views4-gate"),
    (_config("frozen", level_pool="avg", lower_level_gate=True), "frozen-avgpool-gate"),
    (_config("full", augment="mild", lower_level_gate=False), "full-mild"),
    (_config("frozen", lower_level_gate=True, backbone="efficientnet_lite2"), "frozen-gate-lite2"),
    (_config("frozen", backbone="efficientnet_lite0"), "frozen"),
    (_config("frozen", backbone="resnet50"), "frozen-resnet50"),
    ({**_config("top", cached_views=4, lower_level_gate=True), "optim": {"epochs": 16}},
     "top2-views4-gate-e16"),
    ({**_config("frozen", backbone="efficientnet_lite1"), "optim": {"epochs": 12}},
     "frozen-lite1"),
    ({**_config("top", cached_views=4, lower_level_gate=True), "top_stages": 1,
      "freeze_depthwise": True}, "top1-views4-dwfrozen-gate"),
])
def test_regime_names_follow_the_config(config, name):
    assert regime_name(config) == name


def test_lower_level_changes_skip_the_baseline_so_its_run_is_shared():
    regimes = {"top2": {"mode": "top"}, "top2-ld": {"mode": "top", "model.level_dropout": 0.5}}
    requests = regime_requests(["cub200"], [48], regimes, ["baseline", "cascading+fusion+attention"])
    changes = {r.label: r.changes for r in requests}
    assert changes["top2/baseline"] == changes["top2-ld/baseline"]
    assert "model.level_dropout" not in changes["top2-ld/baseline"]
    assert changes["top2-ld/cascading+fusion+attention"]["model.level_dropout"] == 0.5
    assert "model.level_dropout" not in changes["top2/cascading+fusion+attention"]


def test_unknown_configuration_is_refused():
    with pytest.raises(ConfigError, match="unknown configurations"):
        regime_requests(["cub200"], [48], {"frozen": {"mode": "frozen"}}, ["no-such-row"])


def test_regime_configurations_limit_a_regime_to_some_rows():
    regimes = {"top2": {"mode": "top"}, "top2-ld": {"mode": "top", "model.level_dropout": 0.5}}
    rows = ["baseline", "cascading", "cascading+fusion+attention"]
    requests = regime_requests(["cub200"], [48], regimes, rows,
                               {"top2-ld": ["baseline", "cascading+fusion+attention"]})
    assert [r.label for r in requests] == [
        "top2/baseline", "top2/cascading", "top2/cascading+fusion+attention",
        "top2-ld/baseline", "top2-ld/cascading+fusion+attention",
    ]
    with pytest.raises(ConfigError, match="not among the regimes"):
        regime_requests(["cub200"], [48], regimes, rows, {"top3": ["baseline"]})
    with pytest.raises(ConfigError, match="unknown configurations"):
        regime_requests(["cub200"], [48], regimes, rows, {"top2": ["no-such-row"]})


def test_regime_configurations_may_name_rows_per_code_length():
    regimes = {"top2": {"mode": "top"}, "top2-gate": {"mode": "top", "model.lower_level_gate": True}}
    rows = ["baseline", "cascading+fusion+attention"]
    requests = regime_requests(["cub200"], [12, 48], regimes, rows,
                               {"top2": {48: rows, "12": ["baseline"]},
                                "top2-gate": {48: rows}})
    assert [(r.bits, r.label) for r in requests] == [
        (12, "top2/baseline"),
        (48, "top2/baseline"), (48, "top2/cascading+fusion+attention"),
        (48, "top2-gate/baseline"), (48, "top2-gate/cascading+fusion+attention"),
    ]
    with pytest.raises(ConfigError, match="code lengths"):
        regime_requests(["cub200"], [48], regimes, rows, {"top2": {24: rows}})
    with pytest.raises(ConfigError, match="unknown configurations"):
        regime_requests(["cub200"], [48], regimes, rows, {"top2": {48: ["no-such-row"]}})


def test_regime_seeds_add_one_run_per_seed_at_the_named_code_lengths():
    regimes = {"top2": {"mode": "top"}, "top2-gate": {"mode": "top", "model.lower_level_gate": True}}
    rows = ["baseline", "cascading+fusion+attention"]
    requests = regime_requests(["cub200"], [12, 48], regimes, rows,
                               {"top2": {12: ["baseline"], 48: ["baseline"]}},
                               regime_seeds={"top2-gate": {"48": [0, 1]}})
    labels = [(r.bits, r.label, r.changes.get("seed")) for r in requests]
    assert labels == [
        (12, "top2/baseline", None),
        (12, "top2-gate/baseline", None), (12, "top2-gate/cascading+fusion+attention", None),
        (48, "top2/baseline", None),
        (48, "top2-gate/baseline/seed0", 0), (48, "top2-gate/baseline/seed1", 1),
        (48, "top2-gate/cascading+fusion+attention/seed0", 0),
        (48, "top2-gate/cascading+fusion+attention/seed1", 1),
    ]
    # the gate is a lower-level change: the baseline's seeded runs are plain baseline runs
    seeded_base = next(r for r in requests if r.label == "top2-gate/baseline/seed1")
    assert "model.lower_level_gate" not in seeded_base.changes
    with pytest.raises(ConfigError, match="not among the regimes"):
        regime_requests(["cub200"], [48], regimes, rows, regime_seeds={"top3": {48: [0]}})
    with pytest.raises(ConfigError, match="code lengths"):
        regime_requests(["cub200"], [48], regimes, rows, regime_seeds={"top2": {24: [0]}})
    with pytest.raises(ConfigError, match="distinct seeds"):
        regime_requests(["cub200"], [48], regimes, rows, regime_seeds={"top2": {48: [1, 1]}})
    with pytest.raises(ConfigError, match="map code lengths"):
        regime_requests(["cub200"], [48], regimes, rows, regime_seeds={"top2": [0, 1]})


def _summary_rows(cells):
    import pandas as pd

    return pd.DataFrame([
        {"dataset": "cub200", "bits": 48, "regime": regime, "configuration": configuration,
         "seed": seed, "val_map": val, "test_map": test, "train_minutes": 30.0}
        for regime, configuration, seed, val, test in cells
    ])


def test_seed_means_and_paired_gaps():
    import math

    from fusnet.experiments.regimes import regime_gaps, regime_seed_means

    full = "cascading+fusion+attention"
    summary = _summary_rows([
        ("gate", "baseline", 0, 80.0, 79.0), ("gate", "baseline", 1, 82.0, 81.0),
        ("gate", "baseline", 2, 81.0, 80.0),
        ("gate", full, 0, 81.0, 80.0), ("gate", full, 1, 83.0, 83.0),
        ("frozen", "baseline", 0, 75.0, 74.0), ("frozen", full, 0, 62.0, 61.0),
    ])
    means = regime_seed_means(summary).set_index(["regime", "configuration"])
    assert means.loc[("gate", "baseline"), "seeds"] == 3
    assert means.loc[("gate", "baseline"), "test_map"] == pytest.approx(80.0)
    assert means.loc[("gate", "baseline"), "test_std"] == pytest.approx(1.0)
    assert math.isnan(means.loc[("frozen", full), "test_std"])
    gaps = regime_gaps(summary, "baseline", full)
    # paired over the seeds both rows ran (0 and 1): test differences +1 and +2
    assert gaps["cub200/48/gate"]["n"] == 2
    assert gaps["cub200/48/gate"]["test"] == pytest.approx(1.5)
    assert gaps["cub200/48/gate"]["val"] == pytest.approx(1.0)
    assert 0.0 < gaps["cub200/48/gate"]["test_p"] < 1.0
    assert gaps["cub200/48/frozen"] == {"val": -13.0, "test": -13.0, "n": 1, "test_p": pytest.approx(math.nan, nan_ok=True)}


def test_readme_comparison_puts_each_full_model_beside_its_baseline():
    from fusnet.experiments.regimes import regime_gaps
    from fusnet.experiments.summary import _regime_comparison

    full = "cascading+fusion+attention"
    summary = _summary_rows([
        ("gate", "baseline", 0, 80.0, 79.0), ("gate", "baseline", 1, 82.0, 81.0),
        ("gate", full, 0, 81.0, 80.0), ("gate", full, 1, 83.0, 83.0),
        ("alone", full, 0, 70.0, 69.0), ("frozen", "cascading", 0, 60.0, 59.0),
    ])
    results = {"runs": summary.to_dict("records"),
               "full_minus_baseline": regime_gaps(summary, "baseline", full)}
    table = _regime_comparison(results)
    assert list(table.index.get_level_values("regime")) == ["gate", "alone"]  # no full: no row
    gate, alone = table.loc[("cub200", "gate", 48)], table.loc[("cub200", "alone", 48)]
    assert gate["baseline: val / test"] == "81.00 / 80.00"
    assert gate["full model: val / test"] == "82.00 / 81.50" and gate["seeds (full)"] == 2
    assert gate["full − baseline, test (paired t over seeds)"].startswith("+1.50 (p = ")
    assert gate["full − baseline, test (paired t over seeds)"].endswith(", n = 2)")
    assert alone["baseline: val / test"] == "not run"
    assert alone["full − baseline, test (paired t over seeds)"] == "—"
    one = _summary_rows([("one", "baseline", 0, 80.0, 79.0), ("one", full, 0, 81.0, 81.0)])
    results = {"runs": one.to_dict("records"),
               "full_minus_baseline": regime_gaps(one, "baseline", full)}
    cell = _regime_comparison(results).loc[("cub200", "one", 48)]
    assert cell["full − baseline, test (paired t over seeds)"] == "+2.00 (n = 1)"  # no p


def test_readme_comparison_follows_the_notebooks_regimes_and_configurations():
    from fusnet.experiments.regimes import regime_gaps
    from fusnet.experiments.summary import _regime_comparison

    full = "cascading+fusion+attention"
    summary = _summary_rows([
        ("late", "baseline", 0, 80.0, 79.0), ("late", full, 0, 81.0, 80.0),
        ("early", "cascading", 0, 60.0, 58.0), ("early", full, 0, 61.0, 61.0),
    ])
    results = {"runs": summary.to_dict("records"),
               "full_minus_baseline": regime_gaps(summary, "cascading", full)}
    parameters = {"regimes": {"early": {}, "late": {}}, "configurations": ["cascading", full]}
    table = _regime_comparison(results, parameters)
    assert list(table.index.get_level_values("regime")) == ["early", "late"]  # the notebook's order
    early = table.loc[("cub200", "early", 48)]
    assert early["baseline: val / test"] == "60.00 / 58.00"  # its first configuration
    assert early["full − baseline, test (paired t over seeds)"] == "+3.00 (n = 1)"
    # without the parameters: Table 6's baseline row (not run in "early"), order of appearance
    table = _regime_comparison(results)
    assert list(table.index.get_level_values("regime")) == ["late", "early"]
    assert table.loc[("cub200", "early", 48), "baseline: val / test"] == "not run"


def test_regime_figure_gives_a_configuration_one_colour_in_every_panel():
    rows = [("frozen", "baseline", 12, 40.0), ("frozen", "full", 12, 35.0),
            ("top2", "full", 24, 70.0)]  # 24 bits: the full model alone, its first column
    summary = pd.DataFrame([{"dataset": "cub200", "regime": regime, "configuration": name,
                             "bits": bits, "test_map": value}
                            for regime, name, bits, value in rows])
    fig = regime_figure(summary)
    twelve, twenty_four = fig.axes
    colours = [tuple(bar.get_facecolor()) for bar in twelve.patches]  # baseline, full
    assert colours[0] != colours[1]
    assert tuple(twenty_four.patches[0].get_facecolor()) == colours[1]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["baseline", "full"]
    plt.close(fig)
