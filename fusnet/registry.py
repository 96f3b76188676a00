"""A name -> object registry: the one helper behind every ``register_*`` decorator.

Datasets (:data:`fusnet.data.DATASETS`), backbones (:data:`fusnet.models.BACKBONES`),
attention modules (:data:`fusnet.models.ATTENTION`) and baseline methods
(:data:`fusnet.methods.METHODS`) are each a :class:`Registry`. The idea is timm's
``register_model``: a variant adds itself with a decorator where it is defined, and
configs name it by a string::

    BACKBONES: Registry[BackboneFactory] = Registry("backbone")

    @BACKBONES.register("resnet50")
    def resnet50(...): ...

    BACKBONES.lookup("resnet50")  # the factory; an unknown name raises ConfigError

A registry is a read-only :class:`~collections.abc.Mapping` (``BACKBONES[name]``,
``name in BACKBONES``, ``sorted(BACKBONES)``, ``list(ATTENTION)``), iterating in
registration order like the plain dicts it replaces; ``BACKBONES[name]`` raises
``KeyError`` for an unknown name, as a dict does, while :meth:`Registry.lookup` raises
the project's :class:`~fusnet.errors.ConfigError` naming the known names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar, overload

from fusnet.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Mapping[str, T]):
    """Named variants of one kind (datasets, backbones, ...), filled by :meth:`register`.

    Args:
        kind: what one entry is, for messages (``"backbone"``, ``"attention module"``).
        plural: ``kind`` in the plural (default ``kind + "s"``).
        error: the exception type of the duplicate and unknown-name errors.
    """

    def __init__(
        self,
        kind: str,
        plural: str | None = None,
        *,
        error: type[Exception] = ConfigError,
    ) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.error = error
        self._entries: dict[str, T] = {}

    # --- registering ----------------------------------------------------------------

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Add ``obj`` under ``name``; without ``obj``, a decorator that adds what it wraps.

        ``@REG.register("x")`` above a function or class, or ``REG.register("x", obj)``.
        Either way the object itself is returned unchanged.

        Raises:
            ConfigError (``error``): ``name`` is already registered, or is not a non-empty
                string.
        """
        if not isinstance(name, str) or not name:
            raise self.error(f"{self.kind} name must be a non-empty string, got {name!r}")

        def add(entry: T) -> T:
            if name in self._entries:
                raise self.error(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            return entry

        return add if obj is None else add(obj)

    # --- looking up -----------------------------------------------------------------

    def lookup(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises:
            ConfigError (``error``): no such entry (the message lists the known names).
        """
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names())
            raise self.error(f"unknown {self.kind} {name!r}; known {self.plural}: {known}") from None

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._entries))

    # --- Mapping interface (read-only, registration order) -----------------------------

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"
