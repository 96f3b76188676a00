"""Typed configuration: one frozen dataclass per component, with the paper's defaults.

The defaults follow the paper ("Implementation details", method.md section 5).
Where the paper is silent, the value is ours and the docstring says so.
A run is fully described by a :class:`RunConfig`; it round-trips through JSON
(``to_dict`` / ``from_dict``), and unknown keys are an error, so a misspelt
option fails at once instead of being ignored.

A method's own options (DPSH's eta, ADSH's |Omega|, ...) are not here: each method
defines them as a frozen dataclass in its module (``fusnet.baselines.adsh.ADSHOptions``),
registered with it, and ``RunConfig.options`` holds the chosen method's, checked against
it (:func:`~fusnet.method_options.method_options`, re-exported here with ``NoOptions``,
``options_class`` and ``LEGACY_OPTIONS_SECTION``). Configs written before that, with one
flat ``baseline`` section, still load (:data:`LEGACY_OPTIONS_SECTION`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fusnet.errors import ConfigError
from fusnet.method_options import (
    LEGACY_OPTIONS_SECTION,
    NoOptions,
    method_options,
    migrate_legacy_options,
    options_class,
)

__all__ = [
    "AUGMENTATIONS",
    "IMAGE_BACKENDS",
    "LEGACY_OPTIONS_SECTION",
    "LEVEL_POOLS",
    "MODES",
    "NOT_IDENTITY",
    "PAPER_BITS",
    "RESUMABLE",
    "SCHEDULES",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "NoOptions",
    "OptimConfig",
    "RunConfig",
    "method_options",
    "options_class",
    "run_fields",
]

PAPER_BITS: tuple[int, ...] = (12, 24, 32, 48)
MODES: tuple[str, ...] = ("full", "frozen", "top")
"""Training regimes (``RunConfig.mode``): the whole network, the head on cached frozen maps,
or the backbone's top stage(s) and the head on cached maps of the stages below."""
AUGMENTATIONS: tuple[str, ...] = ("paper", "mild")
"""Training transforms (``DataConfig.augment``; ``fusnet.data.transforms``)."""
IMAGE_BACKENDS: tuple[str, ...] = ("pil", "tensor")
"""How image files are decoded and augmented (``DataConfig.image_backend``)."""
SCHEDULES: tuple[str, ...] = ("step", "cosine")
"""Learning-rate schedules (``OptimConfig.schedule``)."""
LEVEL_POOLS: tuple[str, ...] = ("max", "avg", "avgmax")
"""How a level block pools its map into g_i (``ModelConfig.level_pool``)."""

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
    """

    dataset: str = "synthetic"
    root: str | None = None
    image_size: int = 336
    val_fraction: float = 0.1
    batch_size: int = 128
    eval_batch_size: int = field(default=64, metadata=NOT_IDENTITY)
    num_workers: int = field(default=0, metadata=NOT_IDENTITY)
    skip_bad_images: bool = False
    synthetic_classes: int = 10
    augment: str = "paper"
    cached_views: int = 0
    image_backend: str = "pil"


@dataclass(frozen=True)
class ModelConfig:
    """Multi-FusNet architecture, with the three ablation switches of Table 6.

    Attributes:
        backbone: a name in ``fusnet.models.BACKBONES``.
        pretrained: ``"none"``, ``"default"`` (the backbone's ImageNet weights) or a
            named weights tag the backbone understands (e.g. ``"IMAGENET1K_V2"``).
        weights_path: local backbone state_dict, overriding ``pretrained``.
        bits: hash code length k.
        attention: channel attention of the fusion branch (eca, se, cbam, coord, psa).
        cascade: all three levels (True) or the top level only (Table 6 "Cascading").
        fusion: two-branch fusion f + A(f) (True) or f alone (Table 6 "Fusion").
        transformer: self-attention hash-feature enhancement (Table 6 "Attention").
        block_mid: width of the level block's 1x1 conv (method.md: 512).
        level_dim: width of each level vector g_i (method.md: 1024).
        hash_hidden: hidden width of the hash head (method.md: 512).
        transformer_dim: model width d of the enhancement encoder (ours: 256).
        transformer_depth: encoder layers (ours: 1).
        transformer_heads: attention heads (ours: 4).
        dropout: encoder dropout (ours: 0.1).
        level_dropout: ours (0 = the paper): while training, each lower level's vector g_i
            (all but the top level) is zeroed per image with this probability, the kept
            ones scaled by 1 / (1 - p), so the hash head cannot lean on the lower levels
            alone (they let it memorise the training images; README fidelity notes).
        level_pool: ours (``"max"`` = the paper's GlobalMaxPool): how each level block pools
            its map into g_i, ``"max"``, ``"avg"`` or ``"avgmax"`` (the sum of both), for
            every level alike (README fidelity notes).
        lower_level_gate: ours (False = the paper): the lower levels' slots of the hash
            head's input are multiplied, after its first BatchNorm, by one learned scalar
            per level initialised to 0, so training starts from the top-level model and
            the lower levels enter only as far as the loss pulls them in.
    """

    backbone: str = "resnet50"
    pretrained: str = "default"
    weights_path: str | None = None
    bits: int = 48
    attention: str = "eca"
    cascade: bool = True
    fusion: bool = True
    transformer: bool = True
    block_mid: int = 512
    level_dim: int = 1024
    hash_hidden: int = 512
    transformer_dim: int = 256
    transformer_depth: int = 1
    transformer_heads: int = 4
    dropout: float = 0.1
    level_dropout: float = 0.0
    level_pool: str = "max"
    lower_level_gate: bool = False


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



@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs.

    Attributes:
        method: "multifusnet" (the paper's model) or a baseline in
            ``fusnet.baselines.METHODS`` (dpsh, hashnet, adsh, semicon, exchnet), trained and
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
        options: the method's own options, an instance of the options dataclass registered
            with it (``fusnet.baselines.dpsh.DPSHOptions``, ...; :class:`NoOptions` for
            Multi-FusNet); None (the default) or a mapping of option names is turned into
            one, checked against the method. In JSON a mapping (``"options": {"eta": 10.0}``).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    options: Any = None
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
        from fusnet.validation import config_problems, raise_problems

        object.__setattr__(self, "options", method_options(self.method, self.options))
        raise_problems(config_problems(self))  # every problem at once (fusnet.validation)
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.top_stages not in (1, 2):
            raise ConfigError(f"top_stages must be 1 or 2, got {self.top_stages}")
        if self.data.augment not in AUGMENTATIONS:
            raise ConfigError(f"data.augment must be one of {list(AUGMENTATIONS)}, "
                              f"got {self.data.augment!r}")
        if self.data.cached_views < 0 or (self.data.cached_views and self.mode != "top"):
            raise ConfigError(f"data.cached_views={self.data.cached_views}: a count >= 0, "
                              "used with mode='top' only")
        if self.data.image_backend == "tensor" and self.data.dataset == "synthetic":
            raise ConfigError("data.image_backend='tensor' reads image files; the synthetic "
                              "set makes its images itself: use image_backend='pil'")
        if self.optim.schedule not in SCHEDULES:
            raise ConfigError(f"optim.schedule must be one of {list(SCHEDULES)}, "
                              f"got {self.optim.schedule!r}")
        if self.optim.warmup_epochs < 0 or (self.optim.schedule == "cosine"
                                            and self.optim.warmup_epochs >= self.optim.epochs):
            raise ConfigError(f"optim.warmup_epochs must be >= 0 and, with the cosine schedule, "
                              f"below optim.epochs; "
                              f"got {self.optim.warmup_epochs}")
        if self.select not in ("val", "last"):
            raise ConfigError(f"select must be 'val' or 'last', got {self.select!r}")
        if self.select == "val" and self.data.val_fraction <= 0:
            raise ConfigError("select='val' needs data.val_fraction > 0 (or use select='last')")
        if self.model.bits <= 0:
            raise ConfigError(f"model.bits must be positive, got {self.model.bits}")
        if self.optim.epochs <= 0:
            raise ConfigError(f"optim.epochs must be positive, got {self.optim.epochs}")

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
            top["options"] = None  # another method: its default options
        options = nested.pop("options", None)
        if options is not None:  # "options.eta": checked against the (new) method's options
            current = method_options(method, top.get("options", self.options))
            top["options"] = method_options(method, {**dataclasses.asdict(current), **options})
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
            raw = migrate_legacy_options(raw)
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
    (``fusnet.checkpoints.load_checkpoint``); a field without metadata is identity and not
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
