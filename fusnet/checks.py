"""Checking values against their dataclass fields: every problem at once, each naming the
field, its command-line flag, the value and what is allowed.

The bottom floor of configuration: :mod:`fusnet.config` checks a run's sections with it,
each method (:mod:`fusnet.methods`) its own options (their ranges are field metadata:
:func:`at_least`, :func:`within`), and the training preflight
(:mod:`fusnet.train.preflight`) what needs the registries and the disk.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from fusnet.errors import ConfigError

Check = Callable[[Any], str | None]
"""A range check: ``None`` when the value is allowed, else what is allowed."""


def check_at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be >= {low}"


def check_above(low: float) -> Check:
    return lambda v: None if v > low else f"must be > {low}"


def check_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    def check(v: Any) -> str | None:
        ok_low = v > low if low_open else v >= low
        ok_high = v < high if high_open else v <= high
        if ok_low and ok_high:
            return None
        return f"must be in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    return check


def at_least(low: float) -> dict[str, Check]:
    """Field metadata of a method option (``fusnet.methods``): the value must be >= ``low``."""
    return {"check": check_at_least(low)}


def within(low: float, high: float) -> dict[str, Check]:
    """Field metadata of a method option: the value must be in [``low``, ``high``]."""
    return {"check": check_in(low, high)}


def flag(name: str) -> str:
    """The command-line flag of a field (``val_fraction`` -> ``--val-fraction``)."""
    return "--" + name.replace("_", "-")


def label(section: str, name: str, flag_prefix: str = "") -> str:
    """``data.batch_size (--batch-size)``; a field of the run itself has no section."""
    where = name if section == "run" else f"{section}.{name}"
    return f"{where} ({flag(flag_prefix + name)})"


def unknown(label_text: str, value: Any, known: list[str]) -> str:
    return f"{label_text} = {value!r}: unknown; choose one of {', '.join(sorted(known))}"


def _type_problem(value: Any, default: Any) -> str | None:
    """What is wrong with the type of ``value`` given its field's default, if anything."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        return None
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        return None if math.isfinite(value) else "must be a finite number"
    if isinstance(default, str):
        return None if isinstance(value, str | os.PathLike) and str(value) else "must be a non-empty string"
    return None


def section_problems(section: str, obj: Any, ranges: Mapping[str, Check] | None = None,
                     flag_prefix: str = "", non_negative: bool = False) -> list[str]:
    """Type and range problems of one dataclass instance's plain fields.

    Args:
        section: its name in the run config (``"data"``, ``"options"``; ``"run"`` for the
            run's own fields).
        obj: the instance.
        ranges: checks by ``"section.field"``; a field's ``check`` metadata otherwise.
        flag_prefix: what the command line puts before the field's flag (``"adsh_"``).
        non_negative: numbers without a check of their own must be >= 0.
    """
    ranges = ranges or {}
    problems = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) or isinstance(value, dict):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        where = label(section, f.name, flag_prefix)
        if default is None:  # an optional path or name: null or a non-empty string
            if value is not None and not (isinstance(value, str | os.PathLike) and str(value)):
                problems.append(f"{where} = {value!r}: must be a string or null")
            continue
        if value is None:
            problems.append(f"{where} = None: must be set")
            continue
        wrong = _type_problem(value, default)
        if wrong is None and not isinstance(value, bool):
            check = ranges.get(f"{section}.{f.name}", f.metadata.get("check"))
            if check is None and non_negative and isinstance(value, int | float):
                check = check_at_least(0)
            wrong = check(value) if check is not None else None
        if wrong is not None:
            problems.append(f"{where} = {value!r}: {wrong}")
    return problems


def device_problems(device: object) -> list[str]:
    """A device string torch cannot parse ("gpu", "cuda:x"); availability is checked later."""
    if not isinstance(device, str) or device == "auto":
        return []
    import torch

    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        return [f"device (--device) = {device!r}: not a device; use auto, cpu, cuda, cuda:N or mps"]
    return []


def raise_problems(problems: list[str], what: str = "invalid configuration") -> None:
    """Raise one :class:`ConfigError` listing every problem (nothing when empty)."""
    if not problems:
        return
    if len(problems) == 1:
        raise ConfigError(f"{what}: {problems[0]}")
    listing = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
    raise ConfigError(f"{what}, {len(problems)} problems: {listing}")
