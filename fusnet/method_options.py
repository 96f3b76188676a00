"""A method's own options: which dataclass holds them, checking them, the old flat form.

Each method defines its options (DPSH's eta, ADSH's |Omega|, ...) as a frozen dataclass
in its module (``fusnet.baselines.adsh.ADSHOptions``), registered with it;
``RunConfig.options`` (:mod:`fusnet.config`) holds the chosen method's, checked here
(:func:`method_options`). Configs written before that, with one flat ``baseline``
section, are migrated on loading (:func:`migrate_legacy_options`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from fusnet.errors import ConfigError


@dataclass(frozen=True)
class NoOptions:
    """The options of a method without options of its own: Multi-FusNet (its settings are
    the run's ``model`` and ``loss`` sections), or a method name that is not registered
    (``fusnet.validation.run_problems`` reports it)."""


LEGACY_OPTIONS_SECTION = "baseline"
"""The one flat section that held every baseline's options before each method owned its
own (``"baseline": {"adsh_gamma": 200.0, "dpsh_eta": 10.0, ...}``): an option ``name`` of
method ``m`` was ``<m>_<name>`` there. :meth:`fusnet.config.RunConfig.from_dict` reads that
form (:func:`migrate_legacy_options`), and run names are still computed over those dotted
keys (``fusnet.experiments.runs``)."""


def options_class(method: str) -> type:
    """The options dataclass of ``method`` (registered with it in ``fusnet.baselines``);
    :class:`NoOptions` for Multi-FusNet and for names that are not methods."""
    from fusnet.baselines import method_class  # the methods import fusnet.config, hence this

    try:
        return method_class(method).Options
    except (ConfigError, TypeError):
        return NoOptions


def method_options(method: str, given: Any = None) -> Any:
    """The options of ``method``: its defaults (``given`` None), ``given`` itself (an
    instance of its options class), or built from a mapping of option names.

    Raises:
        ConfigError: unknown keys (another method's options among them) or options of
            another method, naming ``method`` and its known options.
    """
    cls = options_class(method)
    if given is None:
        return cls()
    if isinstance(given, cls):
        return given
    known = [f.name for f in fields(cls)]
    what = (f"method {method!r} has no options of its own" if not known
            else f"method {method!r} takes the options {known}")
    if dataclasses.is_dataclass(given) and not isinstance(given, type):
        raise ConfigError(f"options are {type(given).__name__}, but {what}")
    if not isinstance(given, dict):
        raise ConfigError(f"config section 'options' must be a mapping; {what}")
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"unknown options config key(s) {unknown}: {what}")
    return cls(**given)


def migrate_legacy_options(raw: dict[str, Any]) -> dict[str, Any]:
    """A config dict in the form before each method owned its options: its flat
    ``baseline`` section (:data:`LEGACY_OPTIONS_SECTION`) becomes the run's method's
    ``options`` (prefix dropped). Other methods' entries had no effect and are dropped.

    Raises:
        ConfigError: a key of the old section that no method had, or both forms at once.
    """
    from fusnet.baselines import METHODS

    old = raw[LEGACY_OPTIONS_SECTION]
    if not isinstance(old, dict):
        raise ConfigError(f"config section {LEGACY_OPTIONS_SECTION!r} must be a mapping")
    if "options" in raw:
        raise ConfigError(f"config has both 'options' and the old {LEGACY_OPTIONS_SECTION!r} "
                          "section; keep 'options'")
    legacy = {f"{m}_{f.name}": (m, f.name) for m in METHODS for f in fields(METHODS[m].Options)}
    unknown = sorted(set(old) - set(legacy))
    if unknown:
        raise ConfigError(f"unknown {LEGACY_OPTIONS_SECTION} config key(s) {unknown}; "
                          f"known keys: {sorted(legacy)}")
    method = raw.get("method", "multifusnet")
    options = {name: old[key] for key, (m, name) in legacy.items() if m == method and key in old}
    migrated = {k: v for k, v in raw.items() if k != LEGACY_OPTIONS_SECTION}
    migrated["options"] = options
    return migrated
