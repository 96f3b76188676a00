"""Tests for fusnet.registry.Registry and the four registries built on it."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from fusnet.data import DATASETS
from fusnet.errors import ConfigError, DataError
from fusnet.methods import METHODS, MULTIFUSNET, build_method, method_names, register_method
from fusnet.models import ATTENTION, BACKBONES
from fusnet.registry import Registry


def test_register_as_decorator_and_plain_call() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("b")
    def b() -> int:
        return 2

    thing = object()
    assert reg.register("a", thing) is thing  # the object comes back unchanged
    assert b() == 2 and reg["b"] is b  # the decorator returns the function unchanged
    assert reg.lookup("a") is thing
    assert reg.names() == ("a", "b")


def test_duplicate_and_bad_names_are_refused() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(ConfigError, match="widget 'a' is already registered"):
        reg.register("a", 2)
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("a")(3)
    assert reg["a"] == 1  # the first entry stays
    with pytest.raises(ConfigError, match="non-empty string"):
        reg.register("", 4)


def test_unknown_name_lists_the_known_names() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("zeta", 1)
    reg.register("alpha", 2)
    with pytest.raises(ConfigError, match=r"unknown widget 'nope'; known widgets: alpha, zeta$"):
        reg.lookup("nope")
    assert reg.names() == ("alpha", "zeta")


def test_plural_and_error_type() -> None:
    reg: Registry[int] = Registry("class", "classes", error=DataError)
    with pytest.raises(DataError, match=r"known classes: $"):
        reg.lookup("x")


def test_mapping_behaviour() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("b", 1)
    reg.register("a", 2)
    assert isinstance(reg, Mapping)
    assert list(reg) == ["b", "a"]  # registration order, like a dict
    assert sorted(reg) == ["a", "b"]
    assert len(reg) == 2 and "a" in reg and "base" not in reg and 3 not in reg
    assert dict(reg) == {"b": 1, "a": 2} and reg.get("c") is None
    with pytest.raises(KeyError):
        reg["c"]  # plain indexing is a dict's: KeyError
    assert "widget" in repr(reg)


def test_project_registries_keep_their_contents() -> None:
    assert list(BACKBONES)[:2] == ["resnet50", "resnet18"]
    assert set(ATTENTION) == {"eca", "se", "cbam", "coord", "psa"}
    assert set(METHODS) == {"dpsh", "hashnet", "adsh", "semicon", "exchnet"}
    assert {"cub200", "synthetic"} <= set(DATASETS)
    assert method_names()[0] == MULTIFUSNET and MULTIFUSNET not in METHODS  # not a baseline
    for registry in (BACKBONES, ATTENTION, METHODS, DATASETS):
        assert isinstance(registry, Registry)
    with pytest.raises(ConfigError, match="unknown method 'nope'; known methods: multifusnet, adsh"):
        build_method("nope")
    with pytest.raises(ConfigError, match="the paper's, not a baseline"):
        register_method(MULTIFUSNET)(object)
