"""Training Multi-FusNet (or a baseline): one run per bit length, checkpointed every epoch.

A run writes into ``config.output_dir``:

- ``config.json``: the run's :class:`~fusnet.config.RunConfig`;
- ``metrics.json``: test mAP (index ties and tie-aware), precision@k, the
  per-epoch history and which epoch was selected, and how;
- ``codes.npz``: packed database (training split) and query (test split) codes;
- ``manifest.json``: code version, data, weights, seed, device, wall time, images/s;
- ``checkpoints/last.pt`` (everything needed to resume exactly),
  ``checkpoints/best.pt`` (the selected weights) and ``model.pt`` (final weights).

Model selection uses the validation split carved from the training split
(``select="val"``) or the last epoch (``select="last"``); never the test split.

``config.method`` other than "multifusnet" trains a baseline from ``fusnet.baselines``
through the same loop: its network and loss come from the method object, whose buffers
(e.g. ADSH's learned database codes V) are checkpointed as the trainer's ``criterion``.

Where batches come from is :mod:`fusnet.run_data`; the checkpoint layout and loading a
trained model are :mod:`fusnet.checkpoints` (re-exported here).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fusnet import runtime
from fusnet.baselines import HashingMethod, build_method
from fusnet.checkpoints import CHECKPOINT_FORMAT, load_checkpoint, load_model
from fusnet.config import RunConfig
from fusnet.errors import CheckpointError, ConfigError, TrainingError
from fusnet.evaluate import encode_cached, encode_dataset, retrieval_metrics, save_codes
from fusnet.losses import MultiTaskLoss, classification_loss, hash_loss
from fusnet.models.multifusnet import MultiFusNet, build_model_backbone
from fusnet.proxy_codes import class_proxy_codes, code_diagnostics
from fusnet.run_data import EpochShuffleSampler, build_run_data, dataset_kwargs
from fusnet.runlock import RunLock
from fusnet.top_stage import TopStageNet, epoch_view_rows
from fusnet.validation import validate_run
from fusnet.zoom import SaliencyZoom, saliency_from_features

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMAT",  # re-exported: fusnet.checkpoints, fusnet.run_data
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


def _parameter_groups(
    model: nn.Module, criterion: nn.Module, config: RunConfig, trainable: nn.Module
) -> list[dict]:
    optim = config.optim
    groups = [{"params": list(model.head.parameters()), "lr": optim.lr}]
    backbone = {"full": model.backbone, "top": getattr(trainable, "stages", None)}.get(config.mode)
    if backbone is not None:
        groups.append(
            {"params": list(backbone.parameters()), "lr": optim.lr * optim.backbone_lr_scale}
        )
    # The task weights alpha are learned without weight decay.
    groups.append({"params": list(criterion.parameters()), "lr": optim.lr, "weight_decay": 0.0})
    return groups


def _scheduler(optimizer: torch.optim.Optimizer, config: RunConfig) -> Any:
    """StepLR (the authors' code) or linear warm-up then half-cosine to 0, stepped per epoch."""
    optim = config.optim
    if optim.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=optim.lr_step,
                                               gamma=optim.lr_gamma)
    warmup, epochs = optim.warmup_epochs, optim.epochs

    def factor(epoch: int) -> float:  # the rate of epoch ``epoch`` (0-based)
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Trainer:
    """One training run (one bit length). Use :func:`train` for the usual entry point."""

    def __init__(self, config: RunConfig, resume: bool = False) -> None:
        self.config = config
        self.resume = resume
        self.output_dir = Path(config.output_dir)
        self.device = runtime.resolve_device(config.device)
        self.rank, self.world = runtime.init_distributed(self.device)
        self.amp = config.amp and self.device.type == "cuda"
        self.history: list[dict[str, Any]] = []
        self.images_seen = 0
        self.train_seconds = 0.0

    # --- set-up -------------------------------------------------------------------

    def _setup(self) -> None:
        config = self.config
        runtime.seed_everything(config.seed)
        self.method: HashingMethod | None = None
        if config.method == "multifusnet":
            self._setup_multifusnet()
        else:
            self._setup_baseline()
        trainable: nn.Module = self.model if config.mode == "full" else self.model.head
        if config.mode != "full":
            self.model.backbone.requires_grad_(False)
            self.model.backbone.eval()
        if config.mode == "top":
            trainable = TopStageNet(self.model, config.top_stages)
            trainable.stages.requires_grad_(True)
        self.trainable = (
            DistributedDataParallel(
                trainable, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            if self.world > 1
            else trainable
        )
        optim = config.optim
        self.optimizer = torch.optim.SGD(
            _parameter_groups(self.model, self.criterion, config, trainable),
            lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay,
        )
        self.scheduler = _scheduler(self.optimizer, config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.sampler = EpochShuffleSampler(len(self.data.fit_index), config.seed, self.rank, self.world)
        self.start_epoch = 0
        self.best: dict[str, Any] = {"epoch": None, "val_map": -1.0}

    def _setup_multifusnet(self) -> None:
        config = self.config
        self.zoom = SaliencyZoom() if config.loss.zoom else None
        # Build once to know the classes, then the data (frozen mode runs the backbone here).
        backbone_model = MultiFusNet(config.model, num_classes=1)
        self.weights_tag = backbone_model.backbone.weights_tag
        self.data = build_run_data(config, backbone_model.backbone, self.device, self.zoom)
        runtime.seed_everything(config.seed)
        self.model = MultiFusNet(config.model, self.data.num_classes, backbone=backbone_model.backbone)
        self.model.to(self.device)
        self.proxy = class_proxy_codes(
            self.data.num_classes, config.model.bits, config.loss.proxy_iterations,
            seed=config.loss.proxy_seed,
        ).to(self.device)  # (C, bits)
        self.proxy_diagnostics = code_diagnostics(self.proxy.cpu())
        self.criterion = MultiTaskLoss(alpha_min=config.loss.alpha_min).to(self.device)

    def _setup_baseline(self) -> None:
        """A ``fusnet.baselines`` method: its network and loss; no zoom view, no proxy codes."""
        config = self.config
        method_cls = build_method(config.method)
        if config.mode != "full" and not method_cls.supports_frozen:
            raise ConfigError(f"method {config.method!r} does not support mode={config.mode!r}")
        self.zoom = None
        backbone = build_model_backbone(config.model)
        self.weights_tag = backbone.weights_tag
        self.data = build_run_data(config, backbone, self.device, None)
        runtime.seed_everything(config.seed)
        self.model = method_cls.build_model(config, self.data.num_classes, backbone).to(self.device)
        fit_labels = self.data.train_labels[self.data.fit_index]  # (N_fit,)
        self.method = method_cls(config, fit_labels, self.data.num_classes)
        self.method.bind(self.model)
        self.method.to(self.device)
        self.proxy, self.proxy_diagnostics = None, None
        self.criterion = self.method  # its buffers (V, memories, steps) travel in checkpoints

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    def _unwrapped(self) -> nn.Module:
        return self.trainable.module if isinstance(self.trainable, DistributedDataParallel) else self.trainable

    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "num_classes": self.data.num_classes,
            "epoch": epoch,
            "model": self.model.state_dict(),
            "criterion": self.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            "best": {"epoch": self.best["epoch"], "val_map": self.best["val_map"]},
            "images_seen": self.images_seen,
            "train_seconds": self.train_seconds,
            "wall_seconds": self._wall_seconds(),
            "resumes": self.resumes,
        }

    def _save_checkpoint(self, epoch: int) -> None:
        if runtime.is_main_process():
            runtime.atomic_torch_save(self._state(epoch), self.checkpoint_dir / "last.pt")

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
        self.criterion.load_state_dict(payload["criterion"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if payload["scaler"]:  # empty when saved without AMP (on a CPU): keep the fresh scaler
            self.scaler.load_state_dict(payload["scaler"])
        elif self.amp:
            logger.warning("%s was saved without AMP; the loss scaler starts afresh", path)
        self.history = list(payload["history"])
        self.best = dict(payload["best"])
        self.images_seen = int(payload["images_seen"])
        self.train_seconds = float(payload["train_seconds"])
        self.wall_before = float(payload.get("wall_seconds", 0.0))  # absent before issue 14
        self.resumes = int(payload.get("resumes", 0)) + 1
        self.start_epoch = int(payload["epoch"])
        logger.info("resumed %s after epoch %d", path, self.start_epoch)

    # --- one epoch ------------------------------------------------------------------

    def _batches(self, epoch: int) -> Iterator[tuple[Any, Any, Tensor, Tensor]]:
        """Yield (inputs, zoom inputs or None, labels, fit positions) for one epoch."""
        self.sampler.set_epoch(epoch)
        batch_size = self.config.data.batch_size
        positions = self.sampler.indices()  # (N_rank,) positions in the fit set, in batch order
        if self.config.mode != "full":
            cache = self.data.database_cache
            order = self.data.fit_index[positions]  # (N_rank,) training-split rows
            if self.data.views:  # top mode: one cached augmented view per image this epoch
                cache = self.data.view_cache
                order = epoch_view_rows(order, len(self.data.train_labels), self.data.views,
                                        self.config.seed, epoch)
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                if len(index) < 2:  # BatchNorm needs two samples
                    continue
                zoom = cache.batch(index, self.device, zoom=True) if self.zoom else None
                yield (cache.batch(index, self.device), zoom, cache.labels[index].to(self.device),
                       positions[start : start + batch_size].to(self.device))
            return
        loader = DataLoader(
            self.data.fit_set,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=self.config.data.num_workers,
            generator=torch.Generator().manual_seed(self.config.seed * 7919 + epoch),
            drop_last=len(self.sampler) > batch_size,
        )
        for start, (images, labels) in zip(
            range(0, len(positions), batch_size), loader, strict=False
        ):  # the loader walks the sampler's order, so batch i holds positions[i*B : (i+1)*B]
            yield (images.to(self.device), None, labels.to(self.device),
                   positions[start : start + batch_size].to(self.device))

    def _step(
        self, inputs: Any, zoom_inputs: Any, labels: Tensor, positions: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        if self.method is not None:  # a baseline: its forward extras and its paper's loss
            with runtime.autocast_context(self.device, self.amp):
                out = self.trainable(inputs, **self.method.forward_kwargs(labels))
            return self.method.loss(out, labels, positions)  # float32, outside autocast
        with runtime.autocast_context(self.device, self.amp):
            out = self.trainable(inputs)
            zoom_logits = None
            if self.zoom is not None:
                if zoom_inputs is None:  # full mode: zoom the batch on its own saliency
                    saliency = saliency_from_features(out.levels[-1])  # (B, h, w), detached
                    zoom_inputs = self.zoom(inputs, saliency)  # (B, 3, H, W)
                # Second pass outside the DDP wrapper: gradients still reach the shared
                # parameters' hooks once per backward, so ranks stay in sync.
                zoom_logits = self._unwrapped()(zoom_inputs).class_logits  # (B, C)
            l_hash = hash_loss(out.hash_logits.float(), self.proxy, labels)
            l_cls = classification_loss(
                out.class_logits.float(),
                None if zoom_logits is None else zoom_logits.float(),
                labels,
                true_prob=self.config.loss.true_prob,
            )
            loss, parts = self.criterion(l_hash, l_cls)
        return loss, parts

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        if self.config.mode != "full":
            self.model.backbone.eval()  # frozen stages: running statistics stay
        self.trainable.train()  # in mode "top" the top stages train, BatchNorm included
        torch.manual_seed(self.config.seed * 1_000_003 + epoch)  # dropout, augmentation
        if self.method is not None:
            self.method.on_epoch_start(epoch)
            self.sampler.subset = self.method.epoch_subset()
        totals: dict[str, float] = {}
        steps, images = 0, 0
        start = time.perf_counter()
        total_steps = math.ceil(len(self.sampler) / self.config.data.batch_size)
        progress = tqdm(
            self._batches(epoch), total=total_steps, desc=f"epoch {epoch + 1}",
            leave=False, disable=None if runtime.is_main_process() else True,
        )
        for inputs, zoom_inputs, labels, positions in progress:
            loss, parts = self._step(inputs, zoom_inputs, labels, positions)
            self._check_finite(loss, epoch, steps)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self._average_loss_weight_grads()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.method is not None:
                self.method.after_step()
            for name, value in parts.items():
                totals[name] = totals.get(name, 0.0) + float(value)
            steps += 1
            images += len(labels) * self.world
            progress.set_postfix(loss=f"{float(loss.detach()):.4f}")
        if self.method is not None:
            self.method.on_epoch_end(epoch)  # e.g. ADSH's update of the database codes V
        self.scheduler.step()
        seconds = time.perf_counter() - start
        self.images_seen += images
        self.train_seconds += seconds
        record = {name: value / max(steps, 1) for name, value in totals.items()}
        record.update(
            epoch=epoch + 1,
            steps=steps,
            seconds=round(seconds, 3),
            images_per_second=round(images / max(seconds, 1e-9), 2),
            lr=self.optimizer.param_groups[0]["lr"],
        )
        return record

    def _average_loss_weight_grads(self) -> None:
        """The learnable task weights live outside the DDP module: average their grads."""
        if not dist.is_initialized():
            return
        for parameter in self.criterion.parameters():
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

    # --- evaluation ---------------------------------------------------------------------

    def _encode_split(self, split: str, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Codes for "train"/"test" (optionally a subset of the training split)."""
        data = self.data
        if self.config.mode != "full":
            cache = data.database_cache if split == "train" else data.query_cache
            encoder = self.model.head if self.config.mode == "frozen" else self._unwrapped()
            return encode_cached(encoder, cache, self.device, index=index)
        dataset = data.database_set if split == "train" else data.query_set
        if index is not None:
            dataset = torch.utils.data.Subset(dataset, index.tolist())
        codes, labels, _ = encode_dataset(
            self.model, dataset, self.device, self.config.data.eval_batch_size,
            self.config.data.num_workers, description=f"encoding {split}",
        )
        return codes, labels

    def _database_codes(self, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Database codes of the training split (or the rows ``index`` of it).

        The network's codes, except that a method with learned database codes (ADSH's V)
        supplies the rows of the images it fitted; only the other rows are encoded.
        """
        learned = self.method.learned_database_codes() if self.method is not None else None
        if learned is None:
            return self._encode_split("train", index)
        labels = self.data.train_labels
        rows = torch.arange(len(labels)) if index is None else index  # (R,) training-split rows
        position = torch.full((len(labels),), -1, dtype=torch.int64)  # fit position of each row
        position[self.data.fit_index] = torch.arange(len(self.data.fit_index))
        fit_position = position[rows]  # (R,)
        fitted = fit_position >= 0  # (R,)
        codes = torch.empty(len(rows), learned.shape[1])  # (R, bits)
        codes[fitted] = learned.cpu().float()[fit_position[fitted]]
        if not bool(fitted.all()):
            codes[~fitted] = self._encode_split("train", rows[~fitted])[0]
        return codes, labels[rows]

    def _validate(self) -> float:
        """Validation mAP: held-out training images queried against the fit images."""
        val_codes, val_labels = self._encode_split("train", self.data.val_index)
        fit_codes, fit_labels = self._database_codes(self.data.fit_index)
        return float(retrieval_metrics(val_codes, fit_codes, val_labels, fit_labels)["map"])

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Validate the config, lock the run folder (fusnet.runlock), then train and evaluate."""
        validate_run(self.config)  # every config problem before any weights, data or cache work
        with RunLock(self.output_dir) if runtime.is_main_process() else nullcontext():
            return self._run()

    def _run(self) -> RunResult:
        self.code = runtime.code_version()  # the code this process trains with (read now, not
        self.wall_start = time.perf_counter()  # when the run ends: the tree may change meanwhile)
        self.wall_before, self.resumes = 0.0, 0  # wall time and resumes of earlier processes
        self._setup()
        self._try_resume()
        config = self.config
        if runtime.is_main_process():
            runtime.write_json(self.output_dir / "config.json", config.to_dict())
        epochs = config.optim.epochs
        for epoch in range(self.start_epoch, epochs):
            record = self._train_epoch(epoch)
            last = epoch + 1 == epochs
            if config.select == "val" and ((epoch + 1) % config.eval_every == 0 or last):
                val_map = self._validate()
                record["val_map"] = val_map
                if val_map > self.best["val_map"]:
                    self.best = {"epoch": epoch + 1, "val_map": val_map}
                    if runtime.is_main_process():
                        runtime.atomic_torch_save(
                            {"format": CHECKPOINT_FORMAT, "config": config.to_dict(),
                             "num_classes": self.data.num_classes,
                             "model": self.model.state_dict(),
                             "criterion": self.criterion.state_dict()},
                            self.checkpoint_dir / "best.pt",
                        )
            self.history.append(record)
            logger.info(
                "epoch %d/%d loss %.4f%s (%.1f img/s)", epoch + 1, epochs, record.get("loss", math.nan),
                f" val mAP {record['val_map']:.4f}" if "val_map" in record else "",
                record["images_per_second"],
            )
            self._save_checkpoint(epoch + 1)
        if config.select == "val":
            best = load_checkpoint(self.checkpoint_dir / "best.pt")
            self.model.load_state_dict(best["model"])
            if self.method is not None:  # the selected epoch's learned codes, memories
                self.method.load_state_dict(best["criterion"])
            selected = {"rule": "best validation mAP", **self.best}
        else:
            selected = {"rule": "last epoch", "epoch": epochs}
        return self._finish(selected, self._wall_seconds())

    def _wall_seconds(self) -> float:
        """Wall time of this run over all its processes (each up to its last checkpoint)."""
        return self.wall_before + time.perf_counter() - self.wall_start

    def _finish(self, selected: dict[str, Any], wall_seconds: float) -> RunResult:
        config = self.config
        db_codes, db_labels = self._database_codes()
        query_codes, query_labels = self._encode_split("test")
        test = retrieval_metrics(query_codes, db_codes, query_labels, db_labels)
        metrics = {
            "method": config.method,
            "database": self._database_definition(),
            "bits": config.model.bits,
            "mode": config.mode,
            "mode_note": _mode_note(config),
            "selection": selected,
            "test": test,
            "map_index_ties": test["map"],
            "map_tie_aware": test["map_tie_aware"],
            "proxy_codes": self.proxy_diagnostics,
            "history": self.history,
        }
        if self.method is not None:
            metrics["method_details"] = self.method.describe()
        if runtime.is_main_process():
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_codes(self.output_dir / "codes.npz", db_codes, db_labels, query_codes, query_labels)
            runtime.atomic_torch_save(
                {"format": CHECKPOINT_FORMAT, "config": config.to_dict(),
                 "num_classes": self.data.num_classes, "model": self.model.state_dict(),
                 "class_names": self.data.class_names},
                self.output_dir / "model.pt",
            )
            # metrics.json last: its presence is what marks a run finished (is_finished).
            runtime.write_json(self.output_dir / "manifest.json", self._manifest(wall_seconds))
            runtime.write_json(self.output_dir / "metrics.json", metrics)
        logger.info(
            "%d bits: test mAP %.4f (index ties), %.4f (tie-aware)",
            config.model.bits, test["map"], test["map_tie_aware"],
        )
        return RunResult(self.output_dir, metrics, self.history)

    def _database_definition(self) -> str:
        """What the retrieval database holds, for ``metrics.json``."""
        if self.method is None or self.method.learned_database_codes() is None:
            return "network codes of the training images"
        if len(self.data.val_index) == 0:
            return "learned codes V"
        return ("learned codes V (fit images); network codes for the "
                f"{len(self.data.val_index)} held-out validation images")

    def _manifest(self, wall_seconds: float) -> dict[str, Any]:
        return {
            "code": self.code,
            "method": self.config.method,
            "config": self.config.to_dict(),
            "data": self.data.description,
            "weights": self.weights_tag,
            "seed": self.config.seed,
            "device": runtime.device_description(self.device),
            "world_size": self.world,
            "amp": self.amp,
            "mode": self.config.mode,
            "wall_seconds": round(wall_seconds, 2),  # summed over resumes
            "wall_seconds_this_process": round(time.perf_counter() - self.wall_start, 2),
            "resumes": self.resumes,
            "train_seconds": round(self.train_seconds, 2),
            "train_images_per_second": round(self.images_seen / max(self.train_seconds, 1e-9), 2),
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def _mode_note(config: RunConfig) -> str:
    """What a mode trains and gives up, for ``metrics.json``."""
    if config.mode == "full":
        return "full training"
    if config.mode == "frozen":
        return ("frozen backbone: cached test-transform features, no augmentation, "
                "no backbone fine-tuning")
    views = config.data.cached_views
    return (f"top-stage fine-tuning: the backbone's last {config.top_stages} stage(s) and the "
            f"head trained on cached maps of the frozen stages below; "
            + (f"{views} cached '{config.data.augment}' augmented views per image, one drawn "
               "per epoch" if views else "test-transform maps, no augmentation")
            + "; zoom crops decided by the pretrained backbone at caching time")


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
    Trainer(config)._setup()


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
