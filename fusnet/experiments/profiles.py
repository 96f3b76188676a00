"""Profiles: every notebook's parameters for one purpose (a CI check, a CPU, the paper).

``PROFILES[profile][notebook]`` is the dict of papermill parameters that ``fusnet reproduce
--profile <profile>`` injects into ``notebooks/<notebook>.ipynb``: the profile's name, the
grid the notebook sweeps (``datasets``, ``bits``), the notebook's own settings (notebook
09's methods and their changes, notebook 11's regimes ...), ``changes`` to the recipe and
``output_root``. The notebook builds its experiment from them with
``ExperimentConfig.from_parameters``, which takes the profile's training recipe by its name
(:mod:`fusnet.experiments.recipes`: ``RECIPES[profile]``, what the profiles are). Each
notebook's ``parameters`` cell lists the same names with the ``smoke`` values as defaults
(a test checks both), so a bare notebook run is the smoke run.
"""

from __future__ import annotations

import copy
from typing import Any

from fusnet.errors import ConfigError
from fusnet.experiments.recipes import RECIPE_NAMES, RECIPES, REGIMES
from fusnet.methods import METHODS as BASELINES
from fusnet.methods import MULTIFUSNET

NOTEBOOKS: tuple[str, ...] = (
    "01_main_results",
    "02_generalisation",
    "03_ablation",
    "04_attention",
    "05_cam",
    "06_convergence",
    "07_retrieval_examples",
    "08_proxy_codes",
    "09_baselines",
    "10_search_your_images",
    "11_regimes",
)
"""The notebooks in ``notebooks/``, in the order ``fusnet reproduce`` runs them."""

PAPER_BITS = [12, 24, 32, 48]
ATTENTIONS = ["eca", "se", "cbam", "coord", "psa"]
METHODS = [MULTIFUSNET, *BASELINES]
"""Notebook 09's methods: Multi-FusNet and every baseline of ``fusnet.methods``, in the
registry's order (dpsh, hashnet, adsh, semicon, exchnet)."""
REGIME_CONFIGURATIONS = ["baseline", "cascading+fusion+attention"]
"""Notebook 11 compares Table 6's row-1 baseline with the full model in each regime."""
CONFIGURATIONS = [
    "baseline",
    "cascading",
    "cascading+fusion",
    "cascading+attention",
    "cascading+fusion+attention",
]


def _profile(
    profile: str,
    *,
    main: list[str],
    generalisation: list[str],
    ablation: list[str],
    ablation_bits: list[int],
    attention_bits: list[int],
    convergence: list[str],
    examples: list[str],
    examples_regime: str | None = None,
    class_counts: dict[str, int],
    num_images: int,
    num_queries: int,
    baselines: list[str],
    baseline_methods: list[str],
    baseline_bits: list[int],
    seeds: list[int],
    method_changes: dict[str, dict[str, Any]],
    method_bits: dict[str, list[int]] | None = None,
    search: dict[str, Any] | None = None,
    regimes: dict[str, dict[str, Any]] | None = None,
    regime_bits: list[int] | None = None,
    regime_rows: list[str] | None = None,
    regime_configurations: dict[str, list[str] | dict[int, list[str]]] | None = None,
    regime_seeds: dict[str, dict[int, list[int]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every notebook's parameters under ``profile``: the datasets per figure, the code
    lengths and the notebooks' own settings (the recipe is ``RECIPES[profile]``)."""

    def params(**grid: Any) -> dict[str, Any]:  # profile, what the notebook varies, changes
        return {"profile": profile, **grid, "changes": {}, "output_root": None}

    return {
        "01_main_results": params(datasets=main, bits=PAPER_BITS),
        "02_generalisation": params(datasets=generalisation, bits=PAPER_BITS),
        "03_ablation": params(datasets=ablation, bits=ablation_bits, configurations=CONFIGURATIONS),
        "04_attention": params(datasets=ablation, bits=attention_bits, attentions=ATTENTIONS),
        "05_cam": params(datasets=main[:1], bits=[48], num_images=num_images, cam_target="hash"),
        "06_convergence": params(datasets=convergence, bits=PAPER_BITS),
        "07_retrieval_examples": params(datasets=examples, bits=[48], num_queries=num_queries,
                                        ks=[5, 10], regime=examples_regime),
        # Trains nothing, so takes no recipe and no changes; its FISH seed is the recipe's.
        "08_proxy_codes": {"profile": profile, "class_counts": class_counts,
                           "bits": PAPER_BITS, "proxy_iterations": 15,
                           "seed": RECIPES[profile]["seed"], "output_root": None},
        "09_baselines": params(datasets=baselines, bits=baseline_bits, methods=baseline_methods,
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
"""Notebook 09 in 3 epochs: the cpu profile's learning rates (:data:`CPU_METHOD_CHANGES`)
and one epoch per outer iteration of the asymmetric methods, so V is updated 3 times."""

CPU_METHOD_CHANGES: dict[str, dict[str, Any]] = {
    "dpsh": {"optim.lr": 0.001, "optim.momentum": 0.0},
    "hashnet": {"optim.lr": 0.01},
    "adsh": {"optim.lr": 0.001, "options.inner_epochs": 3},
    "semicon": {"optim.lr": 0.1, "options.inner_epochs": 3, "options.num_samples": 500},
    "exchnet": {"optim.lr": 0.001, "options.inner_epochs": 3, "options.align_start": 2,
                "options.num_samples": 500},
}
"""Notebook 09's per-method settings in the profile's 12 epochs.

- **Learning rates**, each chosen on the CUB subset's validation split (48 bits, seed 0;
  the tables are in ``results/09_baselines/cpu/lr_sweep.md``; the test split played no
  part). DPSH, HashNet, ADSH: ``scripts/baseline_lr_sweep.sh`` (6 epochs, lr 0.001 /
  0.01 / 0.05): the profile's 0.05 collapses ADSH's codes and makes DPSH and HashNet
  worse. SEMICON, ExchNet: ``scripts/baselines_parallel.py`` (the profile's 12-epoch
  runs; SEMICON 0.001 / 0.01 / 0.05 / 0.1 / 0.3, ExchNet 0.0003 / 0.001 / 0.01):
  SEMICON 0.1 (0.3 collapses; its loss is scaled by 12/k, a quarter at 48 bits),
  ExchNet 0.001.
- DPSH with plain SGD as its authors (momentum 0.91 diverges).
- 3 epochs per outer iteration for the asymmetric methods (ADSH's own value; SEMICON's 30
  and ExchNet's 10 would leave no update of the codes V within the budget), so V is
  updated 4 times; ExchNet exchanges part features from its 2nd outer iteration on (25
  of 60 in the reimplementation).
- **SEMICON and ExchNet sample 500 images per outer iteration instead of 2,000**, and
  run at 48 bits only (:data:`CPU_METHOD_BITS`): their heads push every image through
  copies of the backbone's top stage four times, about 1.4 s per batch of 32 on 2 cores
  (a run of 12 epochs about 9 min, two at a time with one thread each). So they take a
  quarter of ADSH's steps per epoch: a smaller budget than the other methods get.
"""

CPU_METHOD_BITS: dict[str, list[int]] = {"semicon": [48], "exchnet": [48]}
"""Code lengths of the methods that the cpu profile runs at fewer than all its bits."""

SMOKE_REGIMES: dict[str, dict[str, Any]] = {
    "frozen": REGIMES["frozen"],
    "top2": REGIMES["top2"],
    "top2-views2": {**REGIMES["top2-views4"], "data.cached_views": 2},
    "full-mild": REGIMES["full-mild"],
}
"""Notebook 11 in the smoke profile: each kind of regime once, on the synthetic set."""

LITE_BACKBONES: dict[str, dict[str, Any]] = {
    "lite1": {"model.backbone": "efficientnet_lite1", "data.image_size": 240},
    "lite2": {"model.backbone": "efficientnet_lite2", "data.image_size": 260},
}
"""The larger offline EfficientNet-Lite backbones at their native input sizes (ImageNet top-1
76.7 / 77.6 % against Lite0's 75.1 %; their CPU cost: ``benchmarks/bench_backbones.py``)."""

PAPER_HEAD = {"model.lower_level_gate": False}
"""The paper's head in a profile whose recipe gates the lower levels (the cpu profile's)."""
GATED_HEAD = {"model.lower_level_gate": True}
CPU_REGIMES: dict[str, dict[str, Any]] = {
    "frozen": {**REGIMES["frozen"], **PAPER_HEAD},
    "frozen-gate": {**REGIMES["frozen"], **GATED_HEAD},
    "top2-views4": {**REGIMES["top2-views4"], "optim.lr": 0.2, **PAPER_HEAD},
    "top2-views4-ld0.5": {**REGIMES["top2-views4"], "optim.lr": 0.2, **PAPER_HEAD,
                          "model.level_dropout": 0.5},
    "top2-views4-ld0.8": {**REGIMES["top2-views4"], "optim.lr": 0.2, **PAPER_HEAD,
                          "model.level_dropout": 0.8},
    "top2-views4-gate": {**REGIMES["top2-views4"], "optim.lr": 0.2, **GATED_HEAD},
    "top2-views4-gate-e16": {**REGIMES["top2-views4"], "optim.lr": 0.2, **GATED_HEAD,
                             "optim.epochs": 16},
    "frozen-gate-lite1": {**REGIMES["frozen"], **GATED_HEAD, **LITE_BACKBONES["lite1"]},
    "frozen-gate-lite2": {**REGIMES["frozen"], **GATED_HEAD, **LITE_BACKBONES["lite2"]},
}
"""Notebook 11 in the cpu profile. The top-stage regime's lr 0.2 (head; 0.04 for the two
backbone stages) was the best of 0.02 / 0.05 / 0.1 / 0.2 on the CUB validation split at 48
bits, for the baseline and for the full model alike (a sweep on a lent GPU,
``results/regimes/gpu/``); the test split played no part. End-to-end training (the
paper's regime) is about 4.7 images/s here, over 2 hours a run: not in this profile.
The ``-ld`` regimes drop the lower levels' vectors while training (``model.level_dropout``,
ours), a remedy the frozen regime's diagnosis pointed at; the ``-gate`` regime lets them in
through learned scalars that start at 0 (``model.lower_level_gate``, ours; the best of the
head designs tried on a lent GPU, ``results/regimes/gpu-designs/``), in the top-stage and
in the frozen regime. The baseline has no lower levels, so it shares the ``top2-views4``
(``frozen``) run. Each regime names its head, since the cpu recipe itself has the gate
(``frozen-gate`` is the recipe, as notebooks 01-10 train it). The ``-lite1`` / ``-lite2``
regimes are the recipe on the larger offline backbones (:data:`LITE_BACKBONES`): whether
their ImageNet gain reaches retrieval mAP, and at what CPU cost. ``-e16`` trains 16 epochs
instead of 12 (the cosine schedule stretched to match): every 12-epoch top-stage run was
still gaining validation mAP in its last epochs."""
CPU_REGIME_ROWS = ["baseline", "cascading", "cascading+attention", "cascading+fusion+attention"]
"""Notebook 11's Table 6 rows in the cpu profile: which part of the full model costs it."""
_FULL_VS_BASELINE = ["baseline", "cascading+fusion+attention"]
CPU_REGIME_CONFIGURATIONS: dict[str, dict[int, list[str]]] = {
    "frozen": {12: CPU_REGIME_ROWS, 48: CPU_REGIME_ROWS},
    "top2-views4": {12: ["baseline"], 48: CPU_REGIME_ROWS},
    "top2-views4-ld0.5": {48: _FULL_VS_BASELINE},
    "top2-views4-ld0.8": {48: _FULL_VS_BASELINE},
    "top2-views4-gate": {12: _FULL_VS_BASELINE, 24: _FULL_VS_BASELINE[-1:],
                         32: _FULL_VS_BASELINE[-1:], 48: _FULL_VS_BASELINE},
    "top2-views4-gate-e16": {12: _FULL_VS_BASELINE, 48: _FULL_VS_BASELINE},
    "frozen-gate": {bits: _FULL_VS_BASELINE for bits in PAPER_BITS},
    "frozen-gate-lite1": {12: _FULL_VS_BASELINE, 48: _FULL_VS_BASELINE},
    "frozen-gate-lite2": {12: _FULL_VS_BASELINE, 48: _FULL_VS_BASELINE},
}
"""Which rows each regime runs at each code length: the level-dropout and gate regimes train
the full model only (against the shared baseline); at 12 bits the top-stage regime runs the
baseline and the gated full model (the frozen rows are notebook 03's runs); the gated
top-stage regime also runs the full model alone at 24 and 32 bits (its mAP at every code
length of the paper, against the frozen one; the ablation's code lengths are 12 and 48); the
frozen regime with the gate runs at every code length of the paper (a few minutes a run), on
the Lite1 and Lite2 backbones at 12 and 48 bits; the 16-epoch top-stage regime runs both arms
at 12 bits, where the full model was furthest from issue #11's target, and at 48 bits, the
one code length where 12 epochs stay under it (79.1 against 80)."""
CPU_REGIME_SEEDS: dict[str, dict[int, list[int]]] = {
    "frozen-gate": {bits: [0, 1, 2] for bits in PAPER_BITS},
    "top2-views4-gate": {bits: [0, 1, 2] for bits in PAPER_BITS},
    "top2-views4-gate-e16": {12: [0, 1, 2], 48: [0, 1, 2]},
    "frozen-gate-lite1": {12: [0, 1, 2], 48: [0, 1, 2]},
    "frozen-gate-lite2": {12: [0, 1, 2], 48: [0, 1, 2]},
}
"""Where notebook 11 runs more seeds than the recipe's seed 0: baseline and gated full model,
frozen, at every code length (a few minutes a run), on Lite1 and Lite2 at 12 and 48 bits, in
the gated top-stage regime at every code length (~40-55 min a run on one core here) and in
its 16-epoch version at 12 and 48 bits (~70 min a run on one core beside another run, ~38
min on two threads alone)."""

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": _profile(
        "smoke",
        main=["synthetic"],
        generalisation=["synthetic"],
        ablation=["synthetic"],
        ablation_bits=[12, 48],
        attention_bits=[12, 48],
        convergence=["synthetic"],
        examples=["synthetic"],
        class_counts={"synthetic": 6},
        num_images=3,
        num_queries=4,
        baselines=["synthetic"],
        baseline_methods=METHODS,
        baseline_bits=[12],
        seeds=[0, 1],
        method_changes=SMOKE_METHOD_CHANGES,
        search={"datasets": ["synthetic"], "bits": [48], "photos": "../shared/data/flowers17",
                "num_gallery": 60, "num_added": 20, "num_queries": 4, "k": 5, "kind": "flat"},
        regimes=SMOKE_REGIMES,
        regime_bits=[12],
    ),
    "cpu": _profile(
        "cpu",
        main=["cub200"],
        generalisation=["flowers17"],
        ablation=["cub200"],
        ablation_bits=[12, 48],  # two cells per comparison: the least a paired t-test needs
        attention_bits=[48],
        convergence=["cub200"],
        examples=["cub200", "flowers17"],
        # notebook 11's best regime on validation (issue #11): the 16-epoch top-stage model
        examples_regime="top2-views4-gate-e16",
        class_counts={"cub200": 100, "flowers17": 17},  # the shared CUB subset has 100 classes
        num_images=6,
        num_queries=6,
        baselines=["cub200", "flowers17"],
        baseline_methods=METHODS,
        baseline_bits=[12, 48],
        seeds=[0, 1, 2],
        method_changes=CPU_METHOD_CHANGES,
        method_bits=CPU_METHOD_BITS,
        search={"datasets": ["flowers17"], "bits": [48], "photos": "../shared/data/flowers17",
                "num_gallery": 900, "num_added": 120, "num_queries": 17, "k": 10, "kind": "flat"},
        regimes=CPU_REGIMES,
        regime_bits=PAPER_BITS,
        regime_rows=CPU_REGIME_ROWS,
        regime_configurations=CPU_REGIME_CONFIGURATIONS,
        regime_seeds=CPU_REGIME_SEEDS,
    ),
    "paper": _profile(
        "paper",
        main=["cub200", "aircraft", "food101", "nabirds", "vegfru"],
        generalisation=["stanford_dogs", "flowers5:imagefolder", "animals90:imagefolder",
                        "oxford5k:imagefolder", "bjfu100:imagefolder"],
        ablation=["cub200", "aircraft", "nabirds"],
        ablation_bits=PAPER_BITS,
        attention_bits=PAPER_BITS,
        convergence=["cub200", "aircraft", "nabirds"],
        examples=["cub200", "vegfru", "aircraft", "nabirds"],
        class_counts={"cub200": 200, "aircraft": 100, "food101": 101, "nabirds": 555,
                      "vegfru": 292},
        num_images=8,
        num_queries=2,
        baselines=["cub200", "aircraft", "nabirds"],
        baseline_methods=METHODS,
        baseline_bits=PAPER_BITS,
        seeds=[0, 1, 2],
        # SEMICON in float32: under float16 autocast the gradients reaching SEM's attention
        # trunk (through E * A_j) were ~30% off their float32 values in a check on an H100
        # (27 Nov 2026, not committed); the other methods were within 2%.
        method_changes={"dpsh": {"optim.momentum": 0.0}, "semicon": {"amp": False}},
        # photos None: <--data-root>/flowers17
        search={"datasets": ["cub200"], "bits": [48], "photos": None, "num_gallery": 900,
                "num_added": 120, "num_queries": 17, "k": 10, "kind": "flat"},
        regimes={name: REGIMES[name] for name in ("frozen", "top2-views4", "full-paper")},
    ),
}
"""profile -> notebook -> papermill parameters (module docstring); the profiles are those
of ``RECIPES``."""


def _check_profile(profile: str) -> None:
    """Raise ConfigError for a profile :data:`PROFILES` lacks, naming those it has."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")


def regime_changes(profile: str, regime: str | None) -> dict[str, Any]:
    """The RunConfig changes (dotted) of notebook 11's ``regime`` under ``profile``, so another
    notebook can use a model trained in it (and share notebook 11's run); ``None``: none,
    the profile's recipe.

    Raises:
        ConfigError: unknown profile, or a regime notebook 11 does not run in it.
    """
    _check_profile(profile)
    if regime is None:
        return {}
    regimes = PROFILES[profile]["11_regimes"]["regimes"]
    if regime not in regimes:
        raise ConfigError(f"unknown regime {regime!r} in the {profile} profile; choose None "
                          f"(the recipe) or one of notebook 11's: {sorted(regimes)}")
    return dict(regimes[regime])


def notebook_parameters(profile: str, notebook: str, **changes: Any) -> dict[str, Any]:
    """A copy of one notebook's parameters under a profile, with ``changes`` applied.

    Args:
        profile: a key of :data:`PROFILES`.
        notebook: a name in :data:`NOTEBOOKS`.
        **changes: a name the notebook has replaces its value (``output_root``, ``bits``
            ...); a recipe name (:data:`RECIPE_NAMES`: ``data_root``, ``device`` ...) goes
            into the notebook's ``changes`` when it takes them. Any other name is ignored,
            so one set of command-line changes can go to every notebook.

    Raises:
        ConfigError: unknown profile or notebook.
    """
    _check_profile(profile)
    if notebook not in PROFILES[profile]:
        raise ConfigError(f"unknown notebook {notebook!r}; choose from {list(NOTEBOOKS)}")
    params = copy.deepcopy(PROFILES[profile][notebook])
    for key, value in changes.items():
        if key in params:
            params[key] = value
        elif key in RECIPE_NAMES and "changes" in params:
            params["changes"][key] = value
    return params
