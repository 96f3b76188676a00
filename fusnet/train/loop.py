"""Training any method (Multi-FusNet or a baseline): one run per bit length, checkpointed
every epoch, selected on the validation split (``select="val"``) or at the last epoch,
never on the test split; what a run leaves behind is :mod:`fusnet.train.writer`'s.

The loop (:meth:`Trainer.run`) knows no method: ``config.method`` names a
:class:`~fusnet.methods.HashingMethod` that builds the network and computes each batch's
loss, and whose state (Multi-FusNet's task weights, ADSH's learned database codes V, ...)
is checkpointed as the ``criterion``. Batches come from :mod:`fusnet.train.batches`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from fusnet import runtime
from fusnet.config import RunConfig
from fusnet.errors import CheckpointError, ConfigError, TrainingError
from fusnet.methods import method_class
from fusnet.methods.options import with_options
from fusnet.train.batches import (
    Batch,
    EpochShuffleSampler,
    build_run_data,
    dataset_kwargs,
    epoch_batches,
)
from fusnet.train.checkpoints import (
    CHECKPOINT_FORMAT,
    Progress,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from fusnet.train.evaluation import RunEvaluator
from fusnet.train.lock import RunLock
from fusnet.train.optim import build_optimizer, build_scheduler
from fusnet.train.preflight import validate_run
from fusnet.train.top_stage import TopStageNet, freeze_depthwise
from fusnet.train.writer import run_manifest, run_metrics, write_run

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMAT",  # re-exported: fusnet.train.checkpoints, fusnet.train.batches
    "RunResult",
    "Trainer",
    "cache_features",
    "dataset_kwargs",
    "load_checkpoint",
    "load_model",
    "train",
    "train_bit_lengths",
]


@dataclass
class RunResult:
    """What :func:`train` returns (also written to ``metrics.json``)."""

    output_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """One training run (one bit length) of any method. :func:`train` is the usual entry point.

    Hooks (public, for callers and tests): functions appended to :attr:`after_setup` run
    with the trainer once :meth:`setup` has built everything (before a checkpoint is
    resumed); functions appended to :attr:`before_epoch` run with the trainer and the
    0-based epoch before each epoch trains (raising there stops the run, as a Ctrl-C would).
    """

    def __init__(self, config: RunConfig, resume: bool = False) -> None:
        self.config = config
        self.resume = resume
        self.output_dir = Path(config.output_dir)
        self.device = runtime.resolve_device(config.device)
        self.rank, self.world = runtime.init_distributed(self.device)
        self.amp = config.amp and self.device.type == "cuda"
        self.precision = runtime.resolved_precision(self.device, config.optim.precision)
        self.progress = Progress()
        self.after_setup: list[Callable[[Trainer], None]] = []
        self.before_epoch: list[Callable[[Trainer, int], None]] = []

    # --- set-up -------------------------------------------------------------------

    def setup(self) -> None:
        """Build the method, the run's data (and caches), the network and the optimiser."""
        self.config = config = with_options(self.config)  # every option recorded, defaults too
        runtime.seed_everything(config.seed)
        method_cls = method_class(config.method)
        if config.mode != "full" and not method_cls.supports_frozen:
            raise ConfigError(f"method {config.method!r} does not support mode={config.mode!r}")
        self.zoom = method_cls.build_zoom(config)  # the caches hold its zoomed views too
        backbone = method_cls.build_backbone(config)
        self.weights_tag = backbone.weights_tag
        self.data = build_run_data(config, backbone, self.device, self.zoom)
        runtime.seed_everything(config.seed)
        self.model = method_cls.build_model(config, self.data.num_classes, backbone).to(self.device)
        fit_labels = self.data.train_labels[self.data.fit_index]  # (N_fit,)
        self.method = method_cls(config, fit_labels, self.data.num_classes)
        self.method.bind(self.model)
        self.method.to(self.device)  # its state (task weights, V, memories) travels in checkpoints
        trainable: nn.Module = self.model if config.mode == "full" else self.model.head
        if config.mode != "full":
            self.model.backbone.requires_grad_(False)
            self.model.backbone.eval()
        if config.mode == "top":
            trainable = TopStageNet(self.model, config.top_stages)
            trainable.stages.requires_grad_(True)
            if config.freeze_depthwise:
                frozen = freeze_depthwise(trainable.stages)
                logger.info("freeze_depthwise: %d depthwise convolutions keep their pretrained "
                            "weights", frozen)
        self.trainable = (
            DistributedDataParallel(
                trainable, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            if self.world > 1
            else trainable
        )
        self.optimizer = build_optimizer(self.model, self.method, config, trainable)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.sampler = EpochShuffleSampler(len(self.data.fit_index), config.seed, self.rank, self.world)
        self.evaluator = RunEvaluator(config, self.data, self.model, self.method, self.device,
                                      None if config.mode == "full" else trainable)
        for hook in self.after_setup:
            hook(self)

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    def _save_last(self) -> None:
        save_checkpoint(
            self.checkpoint_dir / "last.pt", self.config, self.data.num_classes, self.model,
            criterion=self.method.state_dict(), optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), scaler=self.scaler.state_dict(),
            **self.progress.checkpoint_entries(self._wall_seconds(), self._caching_seconds()),
        )

    def _try_resume(self) -> None:
        path = self.checkpoint_dir / "last.pt"
        if not self.resume:
            if path.exists():
                raise CheckpointError(
                    f"{self.output_dir} already holds a run ({path}); pass --resume to continue it "
                    "or choose another --output-dir"
                )
            return
        if not path.exists():
            logger.info("no checkpoint at %s: starting from scratch", path)
            return
        payload = load_checkpoint(path, self.config)
        self.model.load_state_dict(payload["model"])
        self.method.load_state_dict(payload["criterion"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if payload["scaler"]:  # empty when saved without AMP (on a CPU): keep the fresh scaler
            self.scaler.load_state_dict(payload["scaler"])
        elif self.amp:
            logger.warning("%s was saved without AMP; the loss scaler starts afresh", path)
        self.progress = Progress.resumed_from(payload)
        logger.info("resumed %s after epoch %d", path, self.progress.epoch)

    # --- the loop -------------------------------------------------------------------

    def run(self) -> RunResult:
        """Validate the config, lock the run folder (fusnet.train.lock), then train and evaluate."""
        validate_run(self.config)  # every config problem before any weights, data or cache work
        with RunLock(self.output_dir) if runtime.is_main_process() else nullcontext():
            self.code = runtime.code_version()  # the code this process trains with (read now,
            self.wall_start = time.perf_counter()  # not at the end: the tree may change)
            self.setup()
            self._try_resume()
            if runtime.is_main_process():
                runtime.write_json(self.output_dir / "config.json", self.config.to_dict())
            for epoch in range(self.progress.epoch, self.config.optim.epochs):
                for hook in self.before_epoch:
                    hook(self, epoch)
                record = self.train_epoch(epoch)
                self._validate(epoch, record)
                self.progress.history.append(record)
                self.progress.epoch = epoch + 1
                self._log_epoch(record)
                self._save_last()
            return self._finish()

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """Train epoch ``epoch`` (0-based); returns its history record (mean losses, speed)."""
        if self.config.mode != "full":
            self.model.backbone.eval()  # frozen stages: running statistics stay
        self.trainable.train()  # in mode "top" the top stages train, BatchNorm included
        torch.manual_seed(self.config.seed * 1_000_003 + epoch)  # dropout, augmentation
        self.method.on_epoch_start(epoch)
        self.sampler.subset = self.method.epoch_subset()
        totals: dict[str, float] = {}
        steps, images, start = 0, 0, time.perf_counter()
        batches = epoch_batches(self.config, self.data, self.sampler, epoch, self.device,
                                zoom=self.zoom is not None)
        bar = tqdm(batches, total=math.ceil(len(self.sampler) / self.config.data.batch_size),
                        desc=f"epoch {epoch + 1}", leave=False,
                        disable=None if runtime.is_main_process() else True)
        for batch in bar:
            loss, parts = self._step(batch, epoch, steps)
            for name, value in parts.items():
                totals[name] = totals.get(name, 0.0) + float(value)
            steps += 1
            images += len(batch.labels) * self.world
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        self.method.on_epoch_end(epoch)  # e.g. ADSH's update of the database codes V
        self.scheduler.step()
        seconds = time.perf_counter() - start
        self.progress.images_seen += images
        self.progress.train_seconds += seconds
        record = {name: value / max(steps, 1) for name, value in totals.items()}
        record.update(epoch=epoch + 1, steps=steps, seconds=round(seconds, 3),
                      images_per_second=round(images / max(seconds, 1e-9), 2),
                      lr=self.optimizer.param_groups[0]["lr"])
        return record

    def _step(self, batch: Batch, epoch: int, step: int) -> tuple[Tensor, dict[str, Any]]:
        """One optimiser step on ``batch``: the method's loss, backward, update."""
        loss, parts = self.method.batch_loss(
            self.trainable, batch,
            lambda: runtime.autocast_context(self.device, self.amp, self.precision["used"]))
        self._check_finite(loss, epoch, step)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self._average_method_grads()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.method.after_step()
        return loss, parts

    def _average_method_grads(self) -> None:
        """The method's parameters (task weights) live outside the DDP module: average their grads."""
        if not dist.is_initialized():
            return
        for parameter in self.method.parameters():
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
                parameter.grad /= self.world

    def _check_finite(self, loss: Tensor, epoch: int, step: int) -> None:
        finite = torch.isfinite(loss.detach()).to(torch.float32)
        if dist.is_initialized():
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            kept = self.checkpoint_dir / "last.pt"
            raise TrainingError(
                f"loss became {float(loss.detach())} at epoch {epoch + 1}, step {step + 1}; training "
                f"stopped. The last good checkpoint is kept at {kept} (epoch {epoch}) if one was "
                "written. Lower optim.lr, or disable --amp, and resume or restart."
            )

    def _validate(self, epoch: int, record: dict[str, Any]) -> None:
        """With ``select="val"``, on validation epochs: record the validation mAP, keep the best."""
        last = epoch + 1 == self.config.optim.epochs
        if self.config.select != "val" or not ((epoch + 1) % self.config.eval_every == 0 or last):
            return
        start = time.perf_counter()
        record["val_map"] = val_map = self.evaluator.validation_map()
        self.progress.validation_seconds += time.perf_counter() - start
        if val_map > self.progress.best["val_map"]:
            self.progress.best = {"epoch": epoch + 1, "val_map": val_map}
            save_checkpoint(self.checkpoint_dir / "best.pt", self.config, self.data.num_classes,
                            self.model, criterion=self.method.state_dict())

    def _log_epoch(self, record: dict[str, Any]) -> None:
        logger.info(
            "epoch %d/%d loss %.4f%s (%.1f img/s)", record["epoch"], self.config.optim.epochs,
            record.get("loss", math.nan),
            f" val mAP {record['val_map']:.4f}" if "val_map" in record else "",
            record["images_per_second"],
        )

    # --- the end of the run ---------------------------------------------------------------

    def _wall_seconds(self) -> float:
        """Wall time of this run over all its processes (each up to its last checkpoint)."""
        return self.progress.wall_seconds + time.perf_counter() - self.wall_start

    def _caching_seconds(self) -> float:
        """Seconds this run spent making feature caches, over all its processes (each
        before its last checkpoint)."""
        return self.progress.caching_seconds + self.data.caching_seconds_made

    def _finish(self) -> RunResult:
        """Restore the selected epoch, evaluate on the test split, write the run's files."""
        config, progress = self.config, self.progress
        if config.select == "val":
            best = load_checkpoint(self.checkpoint_dir / "best.pt")
            self.model.load_state_dict(best["model"])
            self.method.load_state_dict(best["criterion"])  # the epoch's learned codes, memories
            selected = {"rule": "best validation mAP", **progress.best}
        else:
            selected = {"rule": "last epoch", "epoch": config.optim.epochs}
        start = time.perf_counter()
        test, codes = self.evaluator.test()
        test_seconds = time.perf_counter() - start
        metrics = run_metrics(config, self.method, self.data, selected, test, progress.history)
        manifest = run_manifest(config, self.data, self.weights_tag, self.device, self.world,
                                self.amp, self.precision, self.code, progress, self._wall_seconds(),
                                time.perf_counter() - self.wall_start, self._caching_seconds(),
                                test_seconds)
        write_run(self.output_dir, config, self.data, self.model, codes, metrics, manifest)
        logger.info("%d bits: test mAP %.4f (index ties), %.4f (tie-aware)",
                    config.model.bits, test["map"], test["map_tie_aware"])
        return RunResult(self.output_dir, metrics, progress.history)


def train(config: RunConfig, resume: bool = False) -> RunResult:
    """Train one model (one bit length) and evaluate it on the test split."""
    return Trainer(config, resume=resume).run()


def cache_features(config: RunConfig) -> None:
    """Compute (or find) a frozen-mode run's backbone feature caches without training.

    Runs started afterwards in parallel processes then read one cache instead of each
    computing it (``scripts/baselines_parallel.py``).
    """
    if config.mode == "full":
        raise ConfigError("feature caches exist in modes 'frozen' and 'top' only, got 'full'")
    validate_run(config)  # every config problem before the backbone runs
    Trainer(config).setup()


def train_bit_lengths(
    config: RunConfig, bits: tuple[int, ...], resume: bool = False
) -> dict[str, Any]:
    """One run per bit length under ``output_dir/bits<k>``, plus a summary ``metrics.json``."""
    root = Path(config.output_dir)
    summary: dict[str, Any] = {"runs": {}, "mode": config.mode, "method": config.method}
    if len(set(bits)) != len(bits) or not bits:
        raise ConfigError(f"--bits {' '.join(map(str, bits))}: give each code length once")
    configs = {}
    for k in bits:  # every bit length checked before the first run starts
        configs[k] = config.replace(
            output_dir=str(root / f"bits{k}"),
            cache_dir=config.cache_dir or str(root / "cache"),
            **{"model.bits": k},
        )
        validate_run(configs[k])
    for k, run_config in configs.items():
        result = train(run_config, resume=resume)
        summary["runs"][str(k)] = {
            "map_index_ties": result.metrics["map_index_ties"],
            "map_tie_aware": result.metrics["map_tie_aware"],
            "selection": result.metrics["selection"],
            "path": f"bits{k}",
        }
    if runtime.is_main_process():
        runtime.write_json(root / "metrics.json", summary)
        runtime.write_json(root / "config.json", config.to_dict())
    return summary
