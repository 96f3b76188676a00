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

Modules: :mod:`.choices` (the allowed values), :mod:`.rules` (ranges and the rules across
fields), :mod:`.legacy` (the old options section), :mod:`.run` (the sections and
:class:`RunConfig`).
"""

from fusnet.config.choices import (
    AUGMENTATIONS,
    CACHE_LAYOUTS,
    CACHE_PRECISIONS,
    IMAGE_BACKENDS,
    MODES,
    PAPER_BITS,
    PRECISIONS,
    SCHEDULES,
)
from fusnet.config.legacy import LEGACY_OPTIONS_SECTION
from fusnet.config.rules import CHOICES, RANGES, config_problems
from fusnet.config.run import (
    NOT_IDENTITY,
    RESUMABLE,
    DataConfig,
    LossConfig,
    OptimConfig,
    RunConfig,
    run_fields,
)
from fusnet.models.multifusnet import LEVEL_POOLS, ModelConfig

__all__ = [
    "AUGMENTATIONS",
    "CACHE_LAYOUTS",
    "CACHE_PRECISIONS",
    "CHOICES",
    "IMAGE_BACKENDS",
    "LEGACY_OPTIONS_SECTION",
    "LEVEL_POOLS",
    "MODES",
    "NOT_IDENTITY",
    "PAPER_BITS",
    "PRECISIONS",
    "RANGES",
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
