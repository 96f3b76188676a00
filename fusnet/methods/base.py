"""What every method shares: the network wrapper, the method interface and the registry.

A method (a baseline, or Multi-FusNet itself: :mod:`fusnet.methods.multifusnet`) is a
:class:`HashingMethod`: an ``nn.Module`` whose buffers hold its training state (ADSH's
learned database codes V, DPSH's output memory, HashNet's step counter, ExchNet's anchors,
Multi-FusNet's task weights), so the training loop (``fusnet.train.loop.Trainer``)
checkpoints and restores it with the rest and a resumed run continues exactly. The loop
calls its hooks in the order :class:`HashingMethod` defines them. Its network is a
:class:`HashingNet`: backbone + head over the backbone's level maps, like Multi-FusNet, so
frozen-backbone mode trains the head on cached maps.

Register a baseline with :func:`register_method`; build one by name with
:func:`build_method` (baselines) or ``fusnet.methods.method_class`` (any method). Options:
:mod:`fusnet.methods.options`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from fusnet.checks import raise_problems, section_problems
from fusnet.config import RunConfig
from fusnet.errors import ConfigError
from fusnet.models.multifusnet import build_model_backbone
from fusnet.registry import Registry

__all__ = [
    "LEARNED_DATABASE", "METHODS", "MULTIFUSNET", "NETWORK_DATABASE", "Autocast", "Batch",
    "HashOutput", "HashingMethod", "HashingNet", "LossAndParts", "NoOptions", "build_method",
    "gather_rows", "global_pool", "option_problems_of", "parse_options", "register_method",
    "same_label", "sign_codes",
]

MULTIFUSNET = "multifusnet"
"""``RunConfig.method`` of the paper's model, the reference every baseline is compared with."""


@dataclass(frozen=True)
class NoOptions:
    """The options of a method without options of its own: Multi-FusNet (its settings are
    the run's ``model`` and ``loss`` sections)."""


def _as_options(options_cls: type, method: str, given: Any) -> Any:
    """``given`` (None, a mapping of option names, or an ``options_cls`` instance) as an
    ``options_cls`` instance, its values not yet checked.

    Raises:
        ConfigError: ``given`` is another method's options, not a mapping, or has unknown
            names; the message says which options ``method`` takes.
    """
    if given is None or isinstance(given, options_cls):
        return given if given is not None else options_cls()
    known = [f.name for f in dataclasses.fields(options_cls)]
    what = (f"method {method!r} has no options of its own" if not known
            else f"method {method!r} takes the options {known}")
    if dataclasses.is_dataclass(given) and not isinstance(given, type):
        raise ConfigError(f"options are {type(given).__name__}, but {what}")
    if not isinstance(given, dict):
        raise ConfigError(f"config section 'options' must be a mapping; {what}")
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"unknown options config key(s) {unknown}: {what}")
    return options_cls(**given)


def option_problems_of(options_cls: type, method: str, given: Any) -> list[str]:
    """What is wrong with ``given`` as ``method``'s options (:func:`_as_options`): one line
    per problem, with its ``--<method>-<option>`` flag."""
    try:
        options = _as_options(options_cls, method, given)
    except ConfigError as exc:
        return [str(exc)]
    return section_problems("options", options, flag_prefix=f"{method}_", non_negative=True)


def parse_options(options_cls: type, method: str, given: Any) -> Any:
    """``given`` as an ``options_cls`` instance, checked.

    Raises:
        ConfigError: every problem at once (:func:`option_problems_of`).
    """
    options = _as_options(options_cls, method, given)
    raise_problems(section_problems("options", options, flag_prefix=f"{method}_", non_negative=True))
    return options


@dataclass
class Batch:
    """One training batch, whatever its source.

    Attributes:
        inputs: images (B, 3, H, W) (mode "full") or the cached level maps the trained
            part reads (modes "frozen" and "top").
        zoom_inputs: the cached zoomed view's maps when the method zooms in a cached mode,
            else None (in mode "full" the method zooms the images itself).
        labels: (B,) classes.
        positions: (B,) the images' positions in the fit set.
    """

    inputs: Any
    zoom_inputs: Any
    labels: Tensor
    positions: Tensor


Autocast = Callable[[], AbstractContextManager]
"""The run's mixed-precision context (a no-op without AMP), entered around a forward pass."""

LossAndParts = tuple[Tensor, dict[str, Tensor]]
"""``(loss, parts)``: a batch's scalar float32 loss and detached scalars for logging
(``parts["loss"]`` is the total)."""

NETWORK_DATABASE = "network codes of the training images"
"""Database definition of symmetric methods: the trained network encodes the database."""

LEARNED_DATABASE = "learned codes V"
"""Database definition of asymmetric methods: the codes V learned for the training images."""


@dataclass
class HashOutput:
    """Named outputs of a baseline network.

    Attributes:
        hash_logits: real-valued outputs u whose signs are the codes, (B, bits).
        class_logits: (B, C), or None for methods without a classifier.
        levels: the backbone maps the head read, each (B, C_i, H_i, W_i).
        extras: method-specific tensors the loss needs (attention maps, part features).
    """

    hash_logits: Tensor
    class_logits: Tensor | None = None
    levels: list[Tensor] = field(default_factory=list)
    extras: dict[str, Tensor] = field(default_factory=dict)


class HashingNet(nn.Module):
    """Backbone + a method's head over the backbone's level maps.

    ``forward(images)`` is ``head(backbone(images))``, as in
    :class:`~fusnet.models.multifusnet.MultiFusNet`, so the shared encoding code
    (``fusnet.eval.encoding``) works unchanged.

    Args:
        backbone: a ``fusnet.models`` backbone (three level maps and ``feature_info``).
        head: a module mapping the level list to a :class:`HashOutput`.
        method: the method's registry name (kept for inspection).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, method: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.method = method

    def forward(self, images: Tensor, **kwargs: Any) -> HashOutput:
        return self.head(self.backbone(images), **kwargs)  # images (B, 3, H, W)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Binary codes in {-1, +1}, (B, bits); sign(0) = +1."""
        return sign_codes(self.forward(images).hash_logits)


def sign_codes(u: Tensor) -> Tensor:
    """{-1, +1} codes of real values; sign(0) = +1 (torch.sign would give 0)."""
    return torch.where(u >= 0, 1.0, -1.0).to(u.dtype)


def same_label(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise similarity of single-label data: 1.0 where ``a_i == b_j``, else 0.0, (len a, len b)."""
    return (a[:, None] == b[None, :]).to(torch.float32)


def global_pool(x: Tensor) -> Tensor:
    """Global average pooling, (B, C, H, W) -> (B, C)."""
    return x.mean(dim=(2, 3))


def gather_rows(values: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """All ranks' ``(values, index)`` concatenated (identity without torch.distributed).

    Memory banks indexed by fit position (DPSH's U, ADSH's outputs on Omega) must see every
    rank's batch; every rank holds a batch of the same size (the sampler pads the shards).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values, index
    world = dist.get_world_size()
    all_values = [torch.empty_like(values) for _ in range(world)]
    all_index = [torch.empty_like(index) for _ in range(world)]
    dist.all_gather(all_values, values.contiguous())
    dist.all_gather(all_index, index.contiguous())
    return torch.cat(all_values), torch.cat(all_index)


class HashingMethod(nn.Module):
    """Base class of the methods: the hooks the training loop calls, in the order it calls them.

    Subclasses set the class attributes and implement ``build_model`` and ``loss`` (or
    override ``batch_loss``, as Multi-FusNet does). Training state lives in buffers
    (checkpointed with the trainer's ``criterion``).

    Args:
        config: the run.
        fit_labels: class of each fit image, in fit-position order, (N_fit,) int64.
        num_classes: classes of the training split.

    Attributes:
        name: registry key.
        paper: citation.
        database: the retrieval database's definition (recorded in ``metrics.json``).
        supports_frozen: whether frozen-backbone mode is meaningful for the method.
        Options: the method's options, a frozen dataclass (:class:`NoOptions`: none).
        options: the run's options of the method, parsed from ``RunConfig.options``.
        proxy_diagnostics: diagnostics of the method's class proxy codes for
            ``metrics.json`` (Multi-FusNet's), or None.
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    database: ClassVar[str] = NETWORK_DATABASE
    supports_frozen: ClassVar[bool] = True
    Options: ClassVar[type] = NoOptions
    proxy_diagnostics: dict[str, Any] | None = None

    def __init__(self, config: RunConfig, fit_labels: Tensor, num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.options = self.parse(config)
        self.bits = config.model.bits
        self.num_classes = num_classes
        self.register_buffer("fit_labels", fit_labels.to(torch.int64).clone())  # (N_fit,)

    @classmethod
    def parse(cls, config: RunConfig) -> Any:
        """The run's options of this method, parsed from the config's data and checked."""
        return parse_options(cls.Options, config.method, config.options)

    @property
    def num_fit(self) -> int:
        return int(self.fit_labels.shape[0])

    @classmethod
    def build_zoom(cls, config: RunConfig) -> nn.Module | None:
        """The zoom view the method trains with (also applied when caching maps), or None."""
        return None

    @classmethod
    def build_backbone(cls, config: RunConfig) -> nn.Module:
        """The backbone the run's data is cached with and the network is built on."""
        return build_model_backbone(config.model)

    @classmethod
    def build_model(cls, config: RunConfig, num_classes: int, backbone: nn.Module) -> HashingNet:
        """The method's network on ``backbone`` (no training state needed)."""
        raise NotImplementedError

    def bind(self, model: HashingNet) -> None:
        """Called once with the built network, before any checkpoint is loaded."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called before epoch ``epoch`` (0-based) draws its batches."""

    def epoch_subset(self) -> Tensor | None:
        """Fit positions this epoch trains on (None: all fit images; ADSH-style methods train
        on a sampled set Omega)."""
        return None

    def batch_loss(self, net: nn.Module, batch: Batch, autocast: Autocast) -> LossAndParts:
        """The loss of one training batch: the network's forward (with :meth:`forward_kwargs`)
        under ``autocast``, then :meth:`loss` in float32.

        Args:
            net: the trained network (``model``, its head, or its top stages; wrapped in
                DistributedDataParallel on several processes).
            batch: inputs (images or cached maps), zoomed inputs, labels, fit positions.
            autocast: the run's mixed-precision context.
        """
        with autocast():
            out = net(batch.inputs, **self.forward_kwargs(batch.labels))
        return self.loss(out, batch.labels, batch.positions)  # float32, outside autocast

    def forward_kwargs(self, labels: Tensor) -> dict[str, Any]:
        """Extra keyword arguments for the network's forward on a training batch (ExchNet's
        feature exchange needs the batch's class anchors)."""
        return {}

    def loss(self, out: HashOutput, labels: Tensor, index: Tensor) -> LossAndParts:
        """The method's paper loss on one batch.

        Args:
            out: the network's outputs.
            labels: (B,) classes.
            index: (B,) positions of the batch in the fit set.
        """
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after each optimiser step (HashNet's continuation step)."""

    def on_epoch_end(self, epoch: int) -> None:
        """Called after the last batch of epoch ``epoch`` (0-based; ADSH's update of V)."""

    def learned_database_codes(self) -> Tensor | None:
        """Codes (N_fit, bits) in {-1, +1} that replace the network's codes of the fit images
        in the retrieval database (ADSH-style methods), in fit-position order, or None."""
        return None

    def database_definition(self, held_out: int) -> str:
        """What the retrieval database holds, for ``metrics.json``.

        Args:
            held_out: validation images of the training split (encoded by the network
                when the fit images have learned codes).
        """
        if self.learned_database_codes() is None:
            return NETWORK_DATABASE
        if held_out == 0:
            return LEARNED_DATABASE
        return (f"{LEARNED_DATABASE} (fit images); network codes for the "
                f"{held_out} held-out validation images")

    def hyperparameters(self) -> dict[str, Any]:
        """The method's options as given (recorded in ``metrics.json``)."""
        return dataclasses.asdict(self.options)

    def derived(self) -> dict[str, Any]:
        """What the method computes from its options and the run (HashNet's alpha, the
        sample size actually drawn, ...), recorded beside them."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "paper": self.paper, "database": self.database,
                "hyperparameters": self.hyperparameters(), "derived": self.derived()}

    def metrics_details(self) -> dict[str, Any] | None:
        """``metrics.json``'s ``method_details`` entry (None: no entry)."""
        return self.describe()


MethodFactory = type[HashingMethod]
METHODS: Registry[MethodFactory] = Registry("baseline")
"""Baseline name -> :class:`HashingMethod` subclass. Fill it with :func:`register_method`.
The paper's method is not a baseline and not an entry (:func:`method_names`)."""


def method_names() -> tuple[str, ...]:
    """Every valid ``RunConfig.method``: :data:`MULTIFUSNET` first, then the baselines."""
    return (MULTIFUSNET, *METHODS.names())


def register_method(name: str) -> Callable[[MethodFactory], MethodFactory]:
    """Class decorator adding a :class:`HashingMethod` subclass (and so its ``Options``) to
    :data:`METHODS` under ``name`` (``RunConfig.method``); sets the class's ``name``.

    Raises:
        ConfigError: ``name`` is already registered, or is :data:`MULTIFUSNET`.
    """

    def decorator(cls: MethodFactory) -> MethodFactory:
        if name == MULTIFUSNET:
            raise ConfigError(f"method {name!r} is the paper's, not a baseline")
        if not (dataclasses.is_dataclass(cls.Options) and cls.Options.__dataclass_params__.frozen):
            raise ConfigError(f"method {name!r}: its Options must be a frozen dataclass")
        METHODS.register(name, cls)
        cls.name = name
        return cls

    return decorator


def build_method(name: str) -> MethodFactory:
    """The baseline class registered as ``name``.

    Raises:
        ConfigError: no such baseline (:data:`MULTIFUSNET` included), naming every method.
    """
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; known methods: {', '.join(method_names())}")
    return METHODS[name]
