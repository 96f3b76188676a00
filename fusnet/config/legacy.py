"""Configs written before each method owned its options: one flat ``baseline`` section."""

from __future__ import annotations

from typing import Any

from fusnet.errors import ConfigError

LEGACY_OPTIONS_SECTION = "baseline"
"""The one flat section that held every baseline's options before each method owned its
own (``"baseline": {"adsh_gamma": 200.0, "dpsh_eta": 10.0, ...}``): an option ``name`` of
method ``m`` was ``<m>_<name>`` there. Run names are still computed over those dotted keys
(``fusnet.experiments.runs``)."""


def migrate_legacy_options(raw: dict[str, Any]) -> dict[str, Any]:
    """A config dict in the form before each method owned its options: the run's method's
    entries of the flat ``baseline`` section become its ``options`` (prefix dropped); the
    other methods' entries had no effect and are dropped (the method checks the names).

    Raises:
        ConfigError: the section is not a mapping, or both forms at once.
    """
    old = raw[LEGACY_OPTIONS_SECTION]
    if not isinstance(old, dict):
        raise ConfigError(f"config section {LEGACY_OPTIONS_SECTION!r} must be a mapping")
    if "options" in raw:
        raise ConfigError(f"config has both 'options' and the old {LEGACY_OPTIONS_SECTION!r} "
                          "section; keep 'options'")
    prefix = f"{raw.get('method', 'multifusnet')}_"
    migrated = {k: v for k, v in raw.items() if k != LEGACY_OPTIONS_SECTION}
    migrated["options"] = {k[len(prefix):]: v for k, v in old.items() if k.startswith(prefix)}
    return migrated
