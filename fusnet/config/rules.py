"""What a run config may hold on its own: ranges, choices, and the rules across fields."""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from typing import Any

from fusnet.checks import (
    Check,
    check_above,
    check_at_least,
    check_in,
    device_problems,
    label,
    section_problems,
)
from fusnet.config.choices import (
    AUGMENTATIONS,
    CACHE_LAYOUTS,
    CACHE_PRECISIONS,
    IMAGE_BACKENDS,
    MODES,
    PRECISIONS,
    SCHEDULES,
)
from fusnet.models.multifusnet import LEVEL_POOLS

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


def config_problems(config: Any) -> list[str]:
    """Everything wrong with a config on its own (no registries, no files): one readable
    line per problem, naming the field, its flag, the value and what is allowed. Names
    (datasets, backbones, methods) and paths are the training preflight's
    (:mod:`fusnet.train.preflight`).

    ``config`` is a :class:`~fusnet.config.run.RunConfig` (which calls this on creation, so
    this module does not import it)."""
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
    if config.freeze_depthwise is True and config.mode != "top":
        problems.append(f"freeze_depthwise (--freeze-depthwise) is used with --mode top only, "
                        f"not mode {config.mode!r}: drop it or use --mode top")
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
