"""The allowed values of the run config's string settings (the checks: :mod:`.rules`)."""

from __future__ import annotations

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
