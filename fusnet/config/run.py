"""The run config's sections (data, loss, optimiser; the model's beside the model) and
:class:`RunConfig`, which holds them: JSON round trips, dotted changes, every problem at once."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fusnet.checks import raise_problems
from fusnet.config.legacy import LEGACY_OPTIONS_SECTION, migrate_legacy_options
from fusnet.config.rules import config_problems
from fusnet.errors import ConfigError
from fusnet.models.multifusnet import ModelConfig

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
        freeze_depthwise: in mode "top", keep the trained stages' depthwise convolutions
            (``groups`` = channels > 1) at their pretrained weights while their BatchNorm and
            every other layer train (ours). On two CPU cores the weight gradient of
            EfficientNet-Lite0's 5x5 depthwise convolutions is 15-19% of a top-stage step
            (``benchmarks/profile_top_stage.py``); without it the step is about 1.2x faster.
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
    freeze_depthwise: bool = False

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


