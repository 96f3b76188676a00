"""Typed configuration: one frozen dataclass per component, with the paper's defaults.

The defaults follow the paper ("Implementation details", method.md section 5).
Where the paper is silent, the value is ours and the docstring says so.
A run is fully described by a :class:`RunConfig`; it round-trips through JSON
(``to_dict`` / ``from_dict``), and unknown keys are an error, so a misspelt
option fails at once instead of being ignored.

The model's own section, :class:`~fusnet.models.multifusnet.ModelConfig`, lives beside the
model and is re-exported here. A method's own options (DPSH's eta, ADSH's |Omega|, ...) are
plain data here (``RunConfig.options``, a mapping of option names): each method parses and
checks them against the frozen dataclass in its module (:mod:`fusnet.methods.options`), so
configuration asks no registry. Configs written before each method owned its options, with
one flat ``baseline`` section, still load (:data:`LEGACY_OPTIONS_SECTION`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fusnet.checks import (
    Check,
    check_above,
    check_at_least,
    check_in,
    device_problems,
    label,
    raise_problems,
    section_problems,
)
from fusnet.errors import ConfigError
from fusnet.models.multifusnet import LEVEL_POOLS, ModelConfig

__all__ = [
    "AUGMENTATIONS",
    "CACHE_LAYOUTS",
    "IMAGE_BACKENDS",
    "LEGACY_OPTIONS_SECTION",
    "LEVEL_POOLS",
    "MODES",
    "NOT_IDENTITY",
    "PAPER_BITS",
    "PRECISIONS",
    "RESUMABLE",
    "SCHEDULES",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "config_problems",
    "run_fields",
]

PAPER_BITS: tuple[int, ...] = (12, 24, 32, 48)
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")
"""Arithmetic of a training step (``OptimConfig.precision``)."""
MODES: tuple[str, ...] = ("full", "frozen", "top")
"""Training regimes (``RunConfig.mode``): the whole network, the head on cached frozen maps,
or the backbone's top stage(s) and the head on cached maps of the stages below."""
AUGMENTATIONS: tuple[str, ...] = ("paper", "mild")
"""Training transforms (``DataConfig.augment``; ``fusnet.data.transforms``)."""
IMAGE_BACKENDS: tuple[str, ...] = ("pil", "tensor")
"""How image files are decoded and augmented (``DataConfig.image_backend``)."""
CACHE_LAYOUTS: tuple[str, ...] = ("contiguous", "channels_last")
"""Memory layout the frozen backbone computes the feature caches in (``DataConfig.cache_layout``)."""
CACHE_PRECISIONS: tuple[str, ...] = PRECISIONS
"""Arithmetic the frozen backbone computes the feature caches in (``DataConfig.cache_precision``)."""
SCHEDULES: tuple[str, ...] = ("step", "cosine")
"""Learning-rate schedules (``OptimConfig.schedule``)."""

NOT_IDENTITY: dict[str, bool] = {"identity": False, "resumable": True}
"""Field metadata of a setting that says where or how fast a run computes, not what: it does
not name the run (:func:`run_fields`) and may change when the run is resumed."""
RESUMABLE: dict[str, bool] = {"resumable": True}
"""Field metadata of a setting that names the run but may change when it is resumed."""


@dataclass(frozen=True)
class DataConfig:
    """Which images, at what size, in what batches.

    Attributes:
        dataset: a name in ``fusnet.data.DATASETS`` ("synthetic" needs no files).
        root: folder holding the dataset's official layout (unused for "synthetic").
        image_size: training crop / test centre crop (paper 336, authors' code 224).
        eval_image_size: the test transform's size when it differs from ``image_size``
            (0: the same): the database, the validation and test queries, and what an
            exported model encodes. Trained with random resized crops, a network sees objects
            larger than a centre crop of the same size shows them, so it retrieves better from
            somewhat larger test images (Touvron et al. 2019, "Fixing the train-test
            resolution discrepancy"): ours trains on 192 px and encodes 224 px. In modes
            "frozen" and "top" it needs augmented views to train on (``cached_views``).
        val_fraction: share of each class's training images held out for model selection.
        batch_size: training batch (paper 128).
        eval_batch_size: batch for encoding.
        num_workers: DataLoader worker processes.
        skip_bad_images: log and drop unreadable images instead of stopping.
        synthetic_classes: classes of the synthetic default (ignored otherwise).
        augment: the training transform: "paper" (random crop, rotation ±30°, flip 0.7,
            colour jitter 0.5 with hue) or "mild" (ours: random resized crop of 35-100%
            of the area, flip 0.5, jitter 0.2 without hue).
        cached_views: ``mode="top"`` only: augmented views of every training image whose
            lower-stage maps are cached (each epoch draws one per image); 0 trains on the
            test-transform maps (no augmentation).
        image_backend: "pil" (PIL images and torchvision's PIL transforms) or "tensor"
            (``fusnet.data.tensor_io``: JPEGs decoded to uint8 tensors, the same recipes on
            tensors, about 2x faster on a CPU; image files only, not "synthetic").
        cache_layout: modes "frozen" and "top": the memory layout the frozen backbone
            computes the feature caches in. "channels_last" (NHWC) runs its depthwise
            convolutions about 1.7x faster on a CPU (``benchmarks/bench_top_stage.py``);
            its maps agree with "contiguous"'s to float rounding (9e-5), not bit for bit,
            so the caches' key names it. Training and evaluation are the same either way.
        cache_precision: modes "frozen" and "top": the arithmetic of that forward.
            "bfloat16" runs it under bf16 autocast, about 2.2x faster again channels-last
            on a CPU with native bf16 (``avx512_bf16`` / ``amx_bf16``); elsewhere it runs in
            float32 with a warning, and the manifest says which was used. Its maps differ
            from float32's by about 1-3% of a value on average (bf16 keeps 8 bits of
            mantissa), so a recipe that uses it is chosen on validation; the key names the
            arithmetic used.
    """

    dataset: str = "synthetic"
    root: str | None = None
    image_size: int = 336
    eval_image_size: int = 0
    val_fraction: float = 0.1
    batch_size: int = 128
    eval_batch_size: int = field(default=64, metadata=NOT_IDENTITY)
    num_workers: int = field(default=0, metadata=NOT_IDENTITY)
    skip_bad_images: bool = False
    synthetic_classes: int = 10
    augment: str = "paper"
    cached_views: int = 0
    image_backend: str = "pil"
    cache_layout: str = "contiguous"
    cache_precision: str = "float32"

    @property
    def test_image_size(self) -> int:
        """The test transform's size: ``eval_image_size``, or ``image_size`` when it is 0."""
        return self.eval_image_size or self.image_size


@dataclass(frozen=True)
class LossConfig:
    """Proxy codes and the multi-task loss (method.md sections 1, 3, 4).

    Attributes:
        zoom: add the attention-guided zoom view to the classification loss.
        true_prob: label-smoothing mass on the true class (paper 0.9).
        proxy_iterations: FISH iterations L for the class proxy codes (paper 15).
        proxy_seed: seed of the proxy codes.
        alpha_min: floor on the task weights alpha in the loss (straight-through). The
            paper's log(1 + alpha) term drives alpha below 0 towards -1 and the loss to
            -inf once alpha < 0; ours keeps Eq. 12 exact for alpha >= alpha_min.
    """

    zoom: bool = True
    true_prob: float = 0.9
    proxy_iterations: int = 15
    proxy_seed: int = 0
    alpha_min: float = 0.01


@dataclass(frozen=True)
class OptimConfig:
    """SGD and schedule. Paper: lr 0.0035, momentum 0.91, weight decay 5e-4, 300 epochs.

    The schedule is unstated in the paper; the authors' code uses StepLR(80, 0.1)
    (``schedule="step"``). ``schedule="cosine"`` (ours) decays every group's rate to 0 along a
    half cosine over the epochs after ``warmup_epochs`` of linear warm-up (per epoch).
    ``precision`` (ours): ``"bfloat16"`` runs each training step under bfloat16 autocast
    where the device computes it natively (a CPU with ``avx512_bf16`` or ``amx_bf16``, a
    CUDA device with bf16); elsewhere the run says so and trains in float32
    (``manifest.json``'s ``precision``). Evaluation always encodes in float32.
    """

    epochs: int = 300
    lr: float = 0.0035
    momentum: float = 0.91
    weight_decay: float = 5e-4
    lr_step: int = 80
    lr_gamma: float = 0.1
    backbone_lr_scale: float = 1.0
    schedule: str = "step"
    warmup_epochs: int = 0
    precision: str = "float32"



@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs.

    Attributes:
        method: "multifusnet" (the paper's model) or a baseline in
            ``fusnet.methods.METHODS`` (dpsh, hashnet, adsh, semicon, exchnet), trained and
            evaluated under the same protocol (data, backbone, loop, evaluation).
        mode: "full" trains the whole network; "frozen" keeps the backbone fixed, caches
            its features once and trains everything above it (fast CPU ablations; no
            image augmentation, since cached features come from the test transform);
            "top" caches the maps below the backbone's last ``top_stages`` stages (test
            transform, plus ``data.cached_views`` augmented views) and fine-tunes those
            stages with the head (``optim.backbone_lr_scale`` scales their rate).
        top_stages: backbone stages trained in mode "top": 1 (the stride-32 stage) or 2
            (the stride-16 and stride-32 stages, so levels 2 and 3 adapt).
        select: "val" keeps the epoch with the best validation mAP; "last" the last epoch.
            The test split is never used for selection.
        eval_every: validate every this many epochs (and always at the last).
        device: "auto", "cpu", "cuda", "cuda:1", "mps".
        amp: mixed precision where the device supports it (CUDA float16).
        output_dir: the run folder (config, metrics, codes, manifest, checkpoints).
        cache_dir: where frozen-mode feature caches go (default: ``<output_dir>/cache``).
        options: the method's own options as data, a mapping of option names to values
            (``{"eta": 10.0}``; empty: the method's defaults). The method parses and checks
            them (:func:`fusnet.methods.options.method_options`); the training preflight
            fills in the defaults, so a run's ``config.json`` lists every option.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    options: dict[str, Any] = field(default_factory=dict)
    method: str = "multifusnet"
    mode: str = "full"
    select: str = "val"
    eval_every: int = field(default=1, metadata=RESUMABLE)
    seed: int = 0
    device: str = field(default="auto", metadata=NOT_IDENTITY)
    amp: bool = True
    output_dir: str = field(default="results/run", metadata=NOT_IDENTITY)
    cache_dir: str | None = field(default=None, metadata=NOT_IDENTITY)
    top_stages: int = 2

    def __post_init__(self) -> None:
        if self.options is None:
            object.__setattr__(self, "options", {})
        elif dataclasses.is_dataclass(self.options) and not isinstance(self.options, type):
            object.__setattr__(self, "options", dataclasses.asdict(self.options))
        elif not isinstance(self.options, dict):
            raise ConfigError(f"config section 'options' must be a mapping, got {self.options!r}")
        raise_problems(config_problems(self))  # every problem at once

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> RunConfig:
        """Copy with top-level fields or dotted sub-fields changed (``"model.bits": 12``).

        ``"options.<name>"`` changes the method's options (the new method's, when ``method``
        changes too: a new method starts from its default options).
        """
        nested: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for key, value in changes.items():
            if "." in key:
                section, name = key.split(".", 1)
                nested.setdefault(section, {})[name] = value
            else:
                top[key] = value
        method = top.get("method", self.method)
        if method != self.method and "options" not in top:
            top["options"] = {}  # another method: its default options
        options = nested.pop("options", None)
        if options is not None:  # "options.eta": the method checks it when it parses them
            current = top.get("options", self.options)
            if dataclasses.is_dataclass(current):
                current = dataclasses.asdict(current)
            top["options"] = {**(current or {}), **options}
        for section, values in nested.items():
            current = getattr(self, section, None)
            if not dataclasses.is_dataclass(current):
                raise ConfigError(f"unknown config section {section!r}")
            _check_keys(type(current), values, section)
            top[section] = dataclasses.replace(current, **values)
        _check_keys(RunConfig, top, "run")
        return dataclasses.replace(self, **top)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """The config a :meth:`to_dict` dict describes; the old form with one flat
        ``baseline`` section of every method's options is read too
        (:data:`LEGACY_OPTIONS_SECTION`)."""
        sections = {
            "data": DataConfig,
            "model": ModelConfig,
            "loss": LossConfig,
            "optim": OptimConfig,
        }
        if LEGACY_OPTIONS_SECTION in raw:
            raw = _migrate_legacy_options(raw)
        _check_keys(cls, raw, "run")
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key in sections:
                if not isinstance(value, dict):
                    raise ConfigError(f"config section {key!r} must be a mapping")
                _check_keys(sections[key], value, key)
                kwargs[key] = sections[key](**value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(raw)


def run_fields(*, identity: bool | None = None, resumable: bool | None = None) -> frozenset[str]:
    """Dotted names of the :class:`RunConfig` fields (``"device"``, ``"data.num_workers"``)
    with these flags.

    A field's metadata (:data:`NOT_IDENTITY`, :data:`RESUMABLE`) says whether it is part of
    a run's identity (``fusnet.experiments.runs.run_hash`` names the run folder from the
    others) and whether it may differ between an interrupted run and its resumption
    (``fusnet.train.checkpoints.load_checkpoint``); a field without metadata is identity and not
    resumable. A flag left ``None`` is not checked.
    """

    def walk(cls: type, prefix: str) -> set[str]:
        names: set[str] = set()
        for f in fields(cls):
            if dataclasses.is_dataclass(f.default_factory):  # a section: data, model, ...
                names |= walk(f.default_factory, f"{prefix}{f.name}.")
            elif ((identity is None or f.metadata.get("identity", True) == identity)
                  and (resumable is None or f.metadata.get("resumable", False) == resumable)):
                names.add(f"{prefix}{f.name}")
        return names

    return frozenset(walk(RunConfig, ""))


def _check_keys(cls: type, values: dict[str, Any], where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown {where} config key(s) {unknown}; known keys: {sorted(known)}"
        )


# Numeric ranges by "section.field" ("run" for RunConfig's own fields). Fields without an
# entry still get the type check against their default.
RANGES: dict[str, Check] = {
    "data.image_size": check_at_least(32),
    "data.eval_image_size": check_at_least(0),
    "data.val_fraction": check_in(0.0, 1.0, high_open=True),
    "data.batch_size": check_at_least(2),  # BatchNorm needs two samples a batch
    "data.eval_batch_size": check_at_least(1),
    "data.num_workers": check_at_least(0),
    "data.synthetic_classes": check_at_least(2),
    "data.cached_views": check_at_least(0),
    "model.bits": check_at_least(1),
    "model.block_mid": check_at_least(1),
    "model.level_dim": check_at_least(1),
    "model.hash_hidden": check_at_least(1),
    "model.transformer_dim": check_at_least(1),
    "model.transformer_depth": check_at_least(1),
    "model.transformer_heads": check_at_least(1),
    "model.dropout": check_in(0.0, 1.0, high_open=True),
    "model.level_dropout": check_in(0.0, 1.0, high_open=True),
    "loss.true_prob": check_in(0.0, 1.0, low_open=True),
    "loss.proxy_iterations": check_at_least(0),
    "loss.alpha_min": check_at_least(0),
    "optim.epochs": check_at_least(1),
    "optim.lr": check_above(0),
    "optim.momentum": check_in(0.0, 1.0, high_open=True),
    "optim.weight_decay": check_at_least(0),
    "optim.lr_step": check_at_least(1),
    "optim.lr_gamma": check_above(0),
    "optim.backbone_lr_scale": check_at_least(0),
    "optim.warmup_epochs": check_at_least(0),
    "run.eval_every": check_at_least(1),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "run.mode": MODES, "run.select": ("val", "last"), "data.augment": AUGMENTATIONS,
    "optim.schedule": SCHEDULES, "data.image_backend": IMAGE_BACKENDS,
    "optim.precision": PRECISIONS, "data.cache_layout": CACHE_LAYOUTS,
    "data.cache_precision": CACHE_PRECISIONS,
    "model.level_pool": LEVEL_POOLS,
}


def config_problems(config: RunConfig) -> list[str]:
    """Everything wrong with a config on its own (no registries, no files): one readable
    line per problem, naming the field, its flag, the value and what is allowed. Names
    (datasets, backbones, methods) and paths are the training preflight's
    (:mod:`fusnet.train.preflight`)."""
    problems = section_problems("run", config, RANGES)
    for f in fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            problems += section_problems(f.name, value, RANGES)
    for where, allowed in CHOICES.items():
        section, name = where.split(".")
        value = getattr(config if section == "run" else getattr(config, section), name)
        if isinstance(value, str) and value not in allowed:
            problems.append(f"{label(section, name)} = {value!r}: must be one of {', '.join(allowed)}")
    if config.top_stages not in (1, 2):
        problems.append(f"top_stages (--top-stages) = {config.top_stages!r}: must be 1 or 2")
    data, optim, model = config.data, config.optim, config.model
    if isinstance(data.cached_views, int) and data.cached_views and config.mode != "top":
        problems.append(f"data.cached_views (--cached-views) = {data.cached_views}: "
                        "used with --mode top only")
    if isinstance(data.eval_image_size, int) and 0 < data.eval_image_size < 32:
        problems.append(f"data.eval_image_size (--eval-image-size) = {data.eval_image_size}: "
                        "must be 0 (the training size) or at least 32")
    if (isinstance(data.eval_image_size, int) and data.eval_image_size
            and data.eval_image_size != data.image_size and config.mode != "full"
            and not data.cached_views):
        problems.append(f"data.eval_image_size (--eval-image-size) = {data.eval_image_size} "
                        f"differs from data.image_size ({data.image_size}), but mode "
                        f"{config.mode!r} without cached views trains on the evaluation "
                        "caches: use --mode top with --cached-views, or drop it")
    if data.image_backend == "tensor" and data.dataset == "synthetic":
        problems.append("data.image_backend (--image-backend) = 'tensor' reads image files; the "
                        "synthetic set makes its images itself: use --image-backend pil")
    if (optim.schedule == "cosine" and isinstance(optim.warmup_epochs, int)
            and isinstance(optim.epochs, int) and optim.warmup_epochs >= optim.epochs):
        problems.append(f"optim.warmup_epochs (--warmup-epochs) = {optim.warmup_epochs}: with "
                        f"the cosine schedule, must be below optim.epochs ({optim.epochs})")
    if (config.select == "val" and isinstance(data.val_fraction, int | float)
            and data.val_fraction <= 0):
        problems.append("select='val' needs data.val_fraction (--val-fraction) > 0; set it "
                        "(e.g. 0.1) or use --select last")
    problems += device_problems(config.device)
    dim, heads = model.transformer_dim, model.transformer_heads
    if (model.transformer and isinstance(dim, int) and isinstance(heads, int) and heads > 0
            and dim % heads):
        problems.append(f"model.transformer_dim (--transformer-dim) = {dim} must be a multiple "
                        f"of model.transformer_heads (--transformer-heads) = {heads}")
    return problems


LEGACY_OPTIONS_SECTION = "baseline"
"""The one flat section that held every baseline's options before each method owned its
own (``"baseline": {"adsh_gamma": 200.0, "dpsh_eta": 10.0, ...}``): an option ``name`` of
method ``m`` was ``<m>_<name>`` there. Run names are still computed over those dotted keys
(``fusnet.experiments.runs``)."""


def _migrate_legacy_options(raw: dict[str, Any]) -> dict[str, Any]:
    """A config dict in the form before each method owned its options: the run's method's
    entries of the flat ``baseline`` section become its ``options`` (prefix dropped); the
    other methods' entries had no effect and are dropped (the method checks the names).

    Raises:
        ConfigError: the section is not a mapping, or both forms at once.
    """
    old = raw[LEGACY_OPTIONS_SECTION]
    if not isinstance(old, dict):
        raise ConfigError(f"config section {LEGACY_OPTIONS_SECTION!r} must be a mapping")
    if "options" in raw:
        raise ConfigError(f"config has both 'options' and the old {LEGACY_OPTIONS_SECTION!r} "
                          "section; keep 'options'")
    prefix = f"{raw.get('method', 'multifusnet')}_"
    migrated = {k: v for k, v in raw.items() if k != LEGACY_OPTIONS_SECTION}
    migrated["options"] = {k[len(prefix):]: v for k, v in old.items() if k.startswith(prefix)}
    return migrated
