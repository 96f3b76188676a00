"""A method's own options, looked up by method name.

Each method defines its options (DPSH's eta, ADSH's |Omega|, ...) as a frozen dataclass in
its module (``fusnet.methods.baselines.adsh.ADSHOptions``), registered with it; the command
line shows them as ``--<method>-<option>`` flags in the method's own group, and
``hyperparameters()`` records them. ``RunConfig.options`` (:mod:`fusnet.config`) holds them
as a plain mapping, so configuration asks no registry: the method parses them
(:func:`method_options`), and the training preflight checks them with the rest of the run
(:func:`option_problems`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fusnet.config import RunConfig
from fusnet.errors import ConfigError
from fusnet.methods.base import (
    MULTIFUSNET,
    NoOptions,
    build_method,
    option_problems_of,
    parse_options,
)

__all__ = ["NoOptions", "method_options", "option_problems", "options_class", "with_options"]


def options_class(method: str) -> type:
    """The options dataclass of ``method``; :class:`NoOptions` for Multi-FusNet and for
    names that are not methods (the preflight reports those)."""
    if method == MULTIFUSNET:
        return NoOptions
    try:
        return build_method(method).Options
    except ConfigError:
        return NoOptions


def option_problems(method: str, given: Any) -> list[str]:
    """What is wrong with a run's options for ``method``: unknown names, types, ranges
    (one line each, with the ``--<method>-<option>`` flag)."""
    return option_problems_of(options_class(method), method, given)


def method_options(method: str, given: Any = None) -> Any:
    """The options of ``method`` as its dataclass: its defaults (``given`` None or empty),
    ``given`` itself (an instance of its options class), or parsed from a mapping.

    Raises:
        ConfigError: what :func:`option_problems` reports.
    """
    return parse_options(options_class(method), method, given)


def with_options(config: RunConfig) -> RunConfig:
    """``config`` with its method's options checked and every default filled in (what a
    run records in ``config.json``)."""
    options = dataclasses.asdict(method_options(config.method, config.options))
    return config if options == config.options else config.replace(options=options)
