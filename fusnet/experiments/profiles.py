"""Every notebook's parameters under each profile: ``PROFILES[profile][notebook]`` is what
``fusnet reproduce --profile <profile>`` injects (the profile, the grid, the notebook's own
settings, ``changes`` to the recipe, ``output_root``); the notebooks' ``parameters`` cells
hold the ``smoke`` values (a test checks). Why they are what they are: the README.
"""

from __future__ import annotations

import copy
from typing import Any

from fusnet.errors import ConfigError
from fusnet.experiments.recipes import RECIPE_NAMES, RECIPES, REGIMES
from fusnet.methods import METHODS as BASELINES
from fusnet.methods import MULTIFUSNET

NOTEBOOKS: tuple[str, ...] = (
    "01_main_results", "02_generalisation", "03_ablation", "04_attention", "05_cam",
    "06_convergence", "07_retrieval_examples", "08_proxy_codes", "09_baselines",
    "10_search_your_images", "11_regimes",
)  # in the order ``fusnet reproduce`` runs them

PAPER_BITS = [12, 24, 32, 48]
ATTENTIONS = ["eca", "se", "cbam", "coord", "psa"]
METHODS = [MULTIFUSNET, *BASELINES]  # notebook 09's, in the registry's order
REGIME_CONFIGURATIONS = ["baseline", "cascading+fusion+attention"]
CONFIGURATIONS = ["baseline", "cascading", "cascading+fusion", "cascading+attention",
                  "cascading+fusion+attention"]


def _profile(
    profile: str, *, main: list[str], generalisation: list[str], ablation: list[str],
    ablation_bits: list[int], attention_bits: list[int], convergence: list[str],
    examples: list[str], examples_regime: str | None = None, main_regime: str | None = None,
    class_counts: dict[str, int],
    num_images: int, num_queries: int, baselines: list[str], baseline_bits: list[int],
    seeds: list[int], method_changes: dict[str, dict[str, Any]],
    method_bits: dict[str, list[int]] | None = None, search: dict[str, Any] | None = None,
    regimes: dict[str, dict[str, Any]] | None = None, regime_bits: list[int] | None = None,
    regime_rows: list[str] | None = None,
    regime_configurations: dict[str, list[str] | dict[int, list[str]]] | None = None,
    regime_seeds: dict[str, dict[int, list[int]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every notebook's parameters under ``profile``."""

    def params(**grid: Any) -> dict[str, Any]:  # profile, what the notebook varies, changes
        return {"profile": profile, **grid, "changes": {}, "output_root": None}

    return {
        "01_main_results": params(datasets=main, bits=PAPER_BITS, regime=main_regime),
        "02_generalisation": params(datasets=generalisation, bits=PAPER_BITS),
        "03_ablation": params(datasets=ablation, bits=ablation_bits, configurations=CONFIGURATIONS),
        "04_attention": params(datasets=ablation, bits=attention_bits, attentions=ATTENTIONS),
        "05_cam": params(datasets=main[:1], bits=[48], num_images=num_images, cam_target="hash",
                         regime=main_regime),
        "06_convergence": params(datasets=convergence, bits=PAPER_BITS),
        "07_retrieval_examples": params(datasets=examples, bits=[48], num_queries=num_queries,
                                        ks=[5, 10], regime=examples_regime),
        # Trains nothing, so takes no recipe and no changes; its FISH seed is the recipe's.
        "08_proxy_codes": {"profile": profile, "class_counts": class_counts,
                           "bits": PAPER_BITS, "proxy_iterations": 15,
                           "seed": RECIPES[profile]["seed"], "output_root": None},
        "09_baselines": params(datasets=baselines, bits=baseline_bits, methods=METHODS,
                               seeds=seeds, method_changes=method_changes,
                               method_bits=method_bits or {}),
        "10_search_your_images": params(**(search or {})),
        "11_regimes": params(datasets=ablation, bits=regime_bits or ablation_bits,
                             regimes=regimes or {},
                             configurations=regime_rows or REGIME_CONFIGURATIONS,
                             regime_configurations=regime_configurations or {},
                             regime_seeds=regime_seeds or {}),
    }


SMOKE_METHOD_CHANGES: dict[str, dict[str, Any]] = {
    "dpsh": {"optim.lr": 0.001, "optim.momentum": 0.0},
    "adsh": {"optim.lr": 0.001, "options.inner_epochs": 1},
    "semicon": {"optim.lr": 0.001, "options.inner_epochs": 1},
    "exchnet": {"optim.lr": 0.001, "options.inner_epochs": 1, "options.align_start": 2},
}

CPU_METHOD_CHANGES: dict[str, dict[str, Any]] = {
    "dpsh": {"optim.lr": 0.001, "optim.momentum": 0.0},
    "hashnet": {"optim.lr": 0.01},
    "adsh": {"optim.lr": 0.001, "options.inner_epochs": 3},
    "semicon": {"optim.lr": 0.1, "options.inner_epochs": 3, "options.num_samples": 500},
    "exchnet": {"optim.lr": 0.001, "options.inner_epochs": 3, "options.align_start": 2,
                "options.num_samples": 500},
}

CPU_METHOD_BITS: dict[str, list[int]] = {"semicon": [48], "exchnet": [48]}

SMOKE_REGIMES: dict[str, dict[str, Any]] = {
    "frozen": REGIMES["frozen"],
    "top2": REGIMES["top2"],
    "top2-views2": {**REGIMES["top2-views4"], "data.cached_views": 2},
    "full-mild": REGIMES["full-mild"],
}

LITE_BACKBONES: dict[str, dict[str, Any]] = {
    "lite1": {"model.backbone": "efficientnet_lite1", "data.image_size": 240},
    "lite2": {"model.backbone": "efficientnet_lite2", "data.image_size": 260},
}

PAPER_HEAD = {"model.lower_level_gate": False}
GATED_HEAD = {"model.lower_level_gate": True}
_CPU_TOP = {**REGIMES["top2-views4"], "optim.lr": 0.2}
_CPU_TOP1 = {**REGIMES["top1-views4"], "optim.lr": 0.2, "model.lower_level_gate": True}
_CPU_TOP1_FAST = {**_CPU_TOP1, "data.cache_layout": "channels_last",
                  "data.cache_precision": "bfloat16"}
CPU_REGIMES: dict[str, dict[str, Any]] = {
    "frozen": {**REGIMES["frozen"], **PAPER_HEAD},
    "frozen-gate": {**REGIMES["frozen"], **GATED_HEAD},
    "top2-views4": {**_CPU_TOP, **PAPER_HEAD},
    "top2-views4-ld0.5": {**_CPU_TOP, **PAPER_HEAD, "model.level_dropout": 0.5},
    "top2-views4-ld0.8": {**_CPU_TOP, **PAPER_HEAD, "model.level_dropout": 0.8},
    "top2-views4-gate": {**_CPU_TOP, **GATED_HEAD},
    "top2-views4-gate-e16": {**_CPU_TOP, **GATED_HEAD, "optim.epochs": 16},
    # issue 27's candidates: only the stride-32 stage trains; 16 epochs validated every 4,
    # or 15 validated at the last on caches made channels-last
    "top1-views4-gate-e16": {**_CPU_TOP1, "optim.epochs": 16, "eval_every": 4},
    "top1-views4-gate-e15": {**_CPU_TOP1, "optim.epochs": 15, "eval_every": 15,
                             "data.cache_layout": "channels_last"},
    # on caches made channels-last in bf16 (about 7 min cold at 224 px): 12 epochs
    # validated every 4 at three peak lrs, and 13 validated at the last
    "top1-views4-gate-e12": {**_CPU_TOP1_FAST, "optim.epochs": 12, "eval_every": 4},
    **{f"top1-views4-gate-e12-lr{lr}": {**_CPU_TOP1_FAST, "optim.epochs": 12, "eval_every": 4,
                                        "optim.lr": lr} for lr in (0.3, 0.4)},
    "top1-views4-gate-e13-lr0.3": {**_CPU_TOP1_FAST, "optim.epochs": 13, "eval_every": 13,
                                   "optim.lr": 0.3},
    # 16 epochs validated at the last, on 192 px images: 0.73x the pixels of each step
    "top1-views4-gate-e16-192px": {**_CPU_TOP1_FAST, "optim.epochs": 16, "eval_every": 16,
                                   "data.image_size": 192},
    # the same with 18 epochs (issue 27's choice: it holds at 12 bits too)
    "top1-views4-gate-e18-192px": {**_CPU_TOP1_FAST, "optim.epochs": 18, "eval_every": 18,
                                   "data.image_size": 192},
    # and encoding 224 px images (data.eval_image_size): one 48-bit run, seed 0
    "top1-views4-gate-e18-192px-eval224": {**_CPU_TOP1_FAST, "optim.epochs": 18,
                                           "eval_every": 18, "data.image_size": 192,
                                           "data.eval_image_size": 224},
    # the same with the depthwise convolutions at their pretrained weights (freeze_depthwise):
    # a 1.2x faster step; 12 and 48 bits, seeds 0-2
    "top1-views4-gate-e18-192px-eval224-dwfrozen": {
        **_CPU_TOP1_FAST, "optim.epochs": 18, "eval_every": 18, "data.image_size": 192,
        "data.eval_image_size": 224, "freeze_depthwise": True},
    "frozen-gate-lite1": {**REGIMES["frozen"], **GATED_HEAD, **LITE_BACKBONES["lite1"]},
    "frozen-gate-lite2": {**REGIMES["frozen"], **GATED_HEAD, **LITE_BACKBONES["lite2"]},
}
CPU_MAIN_REGIME = "top1-views4-gate-e18-192px-eval224-dwfrozen"
"""Issue 28's one recipe for the paper's experiments on the cpu (issue 27's choice, on
validation): the notebooks that name it train their models in this regime of notebook 11."""
CPU_REGIME_ROWS = ["baseline", "cascading", "cascading+attention", "cascading+fusion+attention"]
_FULL_VS_BASELINE = ["baseline", "cascading+fusion+attention"]
CPU_REGIME_CONFIGURATIONS: dict[str, dict[int, list[str]]] = {
    "frozen": {12: CPU_REGIME_ROWS, 48: CPU_REGIME_ROWS},
    "top2-views4": {12: ["baseline"], 48: CPU_REGIME_ROWS},
    "top2-views4-ld0.5": {48: _FULL_VS_BASELINE},
    "top2-views4-ld0.8": {48: _FULL_VS_BASELINE},
    "top2-views4-gate": {12: _FULL_VS_BASELINE, 24: _FULL_VS_BASELINE[-1:],
                         32: _FULL_VS_BASELINE[-1:], 48: _FULL_VS_BASELINE},
    "top2-views4-gate-e16": {12: _FULL_VS_BASELINE, 48: _FULL_VS_BASELINE},
    "top1-views4-gate-e16": {12: _FULL_VS_BASELINE[-1:], 48: _FULL_VS_BASELINE[-1:]},
    "top1-views4-gate-e15": {48: _FULL_VS_BASELINE[-1:]},
    **{f"top1-views4-gate-{name}": {48: _FULL_VS_BASELINE[-1:]}
       for name in ("e12", "e12-lr0.3", "e12-lr0.4")},
    "top1-views4-gate-e13-lr0.3": {48: _FULL_VS_BASELINE[-1:]},
    "top1-views4-gate-e16-192px": {12: _FULL_VS_BASELINE[-1:], 48: _FULL_VS_BASELINE[-1:]},
    "top1-views4-gate-e18-192px": {12: _FULL_VS_BASELINE[-1:], 48: _FULL_VS_BASELINE[-1:]},
    "top1-views4-gate-e18-192px-eval224": {48: _FULL_VS_BASELINE[-1:]},
    "top1-views4-gate-e18-192px-eval224-dwfrozen": {12: _FULL_VS_BASELINE[-1:],
                                                    48: _FULL_VS_BASELINE[-1:]},
    "frozen-gate": {bits: _FULL_VS_BASELINE for bits in PAPER_BITS},
    "frozen-gate-lite1": {12: _FULL_VS_BASELINE, 48: _FULL_VS_BASELINE},
    "frozen-gate-lite2": {12: _FULL_VS_BASELINE, 48: _FULL_VS_BASELINE},
}
CPU_REGIME_SEEDS: dict[str, dict[int, list[int]]] = {
    "frozen-gate": {bits: [0, 1, 2] for bits in PAPER_BITS},
    "top2-views4-gate": {bits: [0, 1, 2] for bits in PAPER_BITS},
    "top2-views4-gate-e16": {12: [0, 1, 2], 48: [0, 1, 2]},
    "top1-views4-gate-e16": {12: [0, 1, 2], 48: [0, 1, 2]},
    "top1-views4-gate-e15": {48: [0, 1, 2]},
    "top1-views4-gate-e13-lr0.3": {48: [0, 1, 2]},  # the e12 ones: seed 0 only
    "top1-views4-gate-e16-192px": {12: [0, 1, 2], 48: [0, 1, 2]},
    "top1-views4-gate-e18-192px": {12: [0, 1, 2], 48: [0, 1, 2]},
    "top1-views4-gate-e18-192px-eval224-dwfrozen": {12: [0, 1, 2], 48: [0, 1, 2]},
    "frozen-gate-lite1": {12: [0, 1, 2], 48: [0, 1, 2]},
    "frozen-gate-lite2": {12: [0, 1, 2], 48: [0, 1, 2]},
}

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": _profile(
        "smoke", main=["synthetic"], generalisation=["synthetic"], ablation=["synthetic"],
        ablation_bits=[12, 48], attention_bits=[12, 48], convergence=["synthetic"],
        examples=["synthetic"], class_counts={"synthetic": 6}, num_images=3, num_queries=4,
        baselines=["synthetic"], baseline_bits=[12], seeds=[0, 1],
        method_changes=SMOKE_METHOD_CHANGES,
        search={"datasets": ["synthetic"], "bits": [48], "photos": "../shared/data/flowers17",
                "num_gallery": 60, "num_added": 20, "num_queries": 4, "k": 5, "kind": "flat"},
        regimes=SMOKE_REGIMES, regime_bits=[12],
    ),
    "cpu": _profile(
        "cpu", main=["cub200", "nabirds"], main_regime=CPU_MAIN_REGIME,
        generalisation=["flowers17"], ablation=["cub200"],
        ablation_bits=[12, 48],  # two cells per comparison: the least a paired t-test needs
        attention_bits=[48], convergence=["cub200"], examples=["cub200", "flowers17"],
        examples_regime=CPU_MAIN_REGIME,
        class_counts={"cub200": 100, "flowers17": 17},  # the shared CUB subset has 100 classes
        num_images=6, num_queries=6, baselines=["cub200", "flowers17"], baseline_bits=[12, 48],
        seeds=[0, 1, 2], method_changes=CPU_METHOD_CHANGES, method_bits=CPU_METHOD_BITS,
        search={"datasets": ["flowers17"], "bits": [48], "photos": "../shared/data/flowers17",
                "num_gallery": 900, "num_added": 120, "num_queries": 17, "k": 10, "kind": "flat"},
        regimes=CPU_REGIMES, regime_bits=PAPER_BITS, regime_rows=CPU_REGIME_ROWS,
        regime_configurations=CPU_REGIME_CONFIGURATIONS, regime_seeds=CPU_REGIME_SEEDS,
    ),
    "paper": _profile(
        "paper",
        main=["cub200", "aircraft", "food101", "nabirds", "vegfru"],
        generalisation=["stanford_dogs", "flowers5:imagefolder", "animals90:imagefolder",
                        "oxford5k:imagefolder", "bjfu100:imagefolder"],
        ablation=["cub200", "aircraft", "nabirds"], ablation_bits=PAPER_BITS,
        attention_bits=PAPER_BITS, convergence=["cub200", "aircraft", "nabirds"],
        examples=["cub200", "vegfru", "aircraft", "nabirds"],
        class_counts={"cub200": 200, "aircraft": 100, "food101": 101, "nabirds": 555,
                      "vegfru": 292},
        num_images=8, num_queries=2, baselines=["cub200", "aircraft", "nabirds"],
        baseline_bits=PAPER_BITS, seeds=[0, 1, 2],
        # SEMICON in float32: float16 autocast bends its attention trunk's gradients (README)
        method_changes={"dpsh": {"optim.momentum": 0.0}, "semicon": {"amp": False}},
        # photos None: <--data-root>/flowers17
        search={"datasets": ["cub200"], "bits": [48], "photos": None, "num_gallery": 900,
                "num_added": 120, "num_queries": 17, "k": 10, "kind": "flat"},
        regimes={name: REGIMES[name] for name in ("frozen", "top2-views4", "full-paper")},
    ),
}


def _notebooks(profile: str) -> dict[str, dict[str, Any]]:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[profile]


def regime_changes(profile: str, regime: str | None) -> dict[str, Any]:
    """Notebook 11's ``regime`` under ``profile`` as dotted RunConfig changes (``None``: the
    recipe's), so another notebook can share its run."""
    regimes = _notebooks(profile)["11_regimes"]["regimes"]
    if regime is None:
        return {}
    if regime not in regimes:
        raise ConfigError(f"unknown regime {regime!r} in the {profile} profile; choose None "
                          f"(the recipe) or one of notebook 11's: {sorted(regimes)}")
    return dict(regimes[regime])


def notebook_parameters(profile: str, notebook: str, **changes: Any) -> dict[str, Any]:
    """A copy of ``PROFILES[profile][notebook]`` with ``changes`` to its own names or, if it
    takes them, its recipe's (:data:`RECIPE_NAMES`); others ignored (one set for all)."""
    if notebook not in _notebooks(profile):
        raise ConfigError(f"unknown notebook {notebook!r}; choose from {list(NOTEBOOKS)}")
    params = copy.deepcopy(PROFILES[profile][notebook])
    for key, value in changes.items():
        if key in params:
            params[key] = value
        elif key in RECIPE_NAMES and "changes" in params:
            params["changes"][key] = value
    return params
