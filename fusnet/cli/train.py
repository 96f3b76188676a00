"""``fusnet train``: its parser, its command, and the option flags made from the config.

Every field of the :class:`~fusnet.config.RunConfig` sections is a flag (``--image-size``; a
bool is ``--x`` / ``--no-x``), with its help from the dataclass's "Attributes:" docstring;
each method's options get a group of their own (``--<method>-<option>``). Options come from
flags or from a JSON config file (``--config``), never both; the flags start from RunConfig's
defaults (the paper's recipe), or from a profile's recipe (``--profile``).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from typing import Any

from fusnet.config import PAPER_BITS, DataConfig, LossConfig, ModelConfig, OptimConfig, RunConfig
from fusnet.errors import ConfigError
from fusnet.methods import METHODS, method_names
from fusnet.methods.options import options_class

SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "loss": LossConfig,
                             "optim": OptimConfig, "run": RunConfig}
OPTIONS_DEST = "options-"
"""``dest`` section prefix of a method's option flags (``cfg__options-adsh__num_samples``)."""


def _attribute_help(cls: type) -> dict[str, str]:
    """Field descriptions from a dataclass's Google-style "Attributes:" docstring."""
    helps: dict[str, str] = {}
    current = None
    for line in (cls.__doc__ or "").split("Attributes:", 1)[-1].splitlines():
        match = re.match(r"\s{8}(\w+): (.*)", line)
        if match:
            current = match.group(1)
            helps[current] = match.group(2).strip()
        elif current and line.startswith(" " * 12):
            helps[current] += " " + line.strip()
    return helps


def _add_flag(group: Any, flag: str, dest: str, f: dataclasses.Field, helps: dict[str, str],
              **extra: Any) -> None:
    """One option flag for the dataclass field ``f`` (a bool: ``--x`` / ``--no-x``)."""
    default = f.default
    text = helps.get(f.name, "").replace("%", "%%") + f" (default: {default})"  # argparse %-formats help
    if isinstance(default, bool):
        group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
    else:
        kind = type(default) if default is not None else str
        group.add_argument(flag, dest=dest, type=kind, default=None, metavar=f.name.upper(), help=text,
                           **extra)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """The RunConfig sections' flags, then each method's options in its own group (title,
    dataclass, ``dest`` section, flag prefix)."""
    groups = [(f"{section} options", cls, section, "") for section, cls in SECTIONS.items()]
    groups += [(f"{method} options (with --method {method})", method_cls.Options,
                OPTIONS_DEST + method, f"{method}-")
               for method, method_cls in METHODS.items() if dataclasses.fields(method_cls.Options)]
    for title, cls, section, prefix in groups:
        group = parser.add_argument_group(title)
        helps = _attribute_help(cls)
        for f in dataclasses.fields(cls):
            if f.name in SECTIONS or f.name == "options":  # RunConfig's nested sections
                continue
            flag = f"--{prefix}" + f.name.replace("_", "-")
            dest = f"cfg__{section}__{f.name}"
            if section == "model" and f.name == "bits":
                group.add_argument(
                    flag, dest=dest, type=int, nargs="+", default=None,
                    help=f"hash code length(s); one run per length (default: {' '.join(map(str, PAPER_BITS))})",
                )
            elif section == "run" and f.name == "method":
                _add_flag(group, flag, dest, f, helps, choices=method_names())
            else:
                _add_flag(group, flag, dest, f, helps)


def config_from_args(args: argparse.Namespace) -> tuple[RunConfig, tuple[int, ...]]:
    """The run config and bit lengths the flags (or ``--config``) ask for."""
    given = {k: v for k, v in vars(args).items() if k.startswith("cfg__") and v is not None}
    profile = getattr(args, "profile", None)
    if args.config:
        if given or profile:
            flags = ", ".join([_flag_of(k) for k in given] + (["--profile"] if profile else []))
            raise ConfigError(f"--config {args.config} was given together with {flags}; put every "
                              "option in the config file, or pass flags only")
        config = RunConfig.from_json(args.config)
        return config, (config.model.bits,)
    base = RunConfig()
    if profile:
        from fusnet.experiments.config import recipe_run_config

        base = recipe_run_config(profile, given.get("cfg__data__dataset"))
    changes: dict[str, Any] = {}
    bits: tuple[int, ...] = PAPER_BITS
    chosen = given.get("cfg__run__method", base.method)
    for key, value in given.items():
        _, section, name = key.split("__")
        if name == "bits":
            bits = tuple(value)
        elif section.startswith(OPTIONS_DEST):
            method = section.removeprefix(OPTIONS_DEST)
            if method != chosen:
                raise ConfigError(f"{_flag_of(key)} is an option of --method {method}, but the "
                                  f"method is {chosen}; {_method_flags(chosen)}")
            changes[f"options.{name}"] = value
        else:
            changes[name if section == "run" else f"{section}.{name}"] = value
    return base.replace(**changes), bits


def _flag_of(key: str) -> str:
    """The flag of a ``cfg__<section>__<name>`` destination."""
    _, section, name = key.split("__")
    prefix = section.removeprefix(OPTIONS_DEST) + "_" if section.startswith(OPTIONS_DEST) else ""
    return "--" + (prefix + name).replace("_", "-")


def _method_flags(method: str) -> str:
    """What ``method``'s option flags are, for messages."""
    names = [f.name for f in dataclasses.fields(options_class(method))]
    if not names:
        return f"{method} has no options of its own"
    return f"{method}'s options: " + ", ".join(f"--{method}-" + n.replace("_", "-") for n in names)


def cmd_train(args: argparse.Namespace) -> int:
    """``fusnet train``: one run per bit length (or the ``--config`` run), its test mAP printed."""
    import torch

    from fusnet.experiments.recipes import RECIPES
    from fusnet.train.loop import train, train_bit_lengths

    config, bits = config_from_args(args)
    threads = RECIPES[args.profile]["threads"] if args.profile else None
    if threads is not None:  # part of the recipe (smoke: 1, the same numbers anywhere)
        torch.set_num_threads(threads)
    if args.config:
        result = train(config, resume=args.resume)
        summary = {str(config.model.bits): result.metrics["map_index_ties"]}
    else:
        runs = train_bit_lengths(config, bits, resume=args.resume)["runs"]
        summary = {k: v["map_index_ties"] for k, v in runs.items()}
    for k, value in summary.items():
        sys.stdout.write(f"{k:>3} bits  test mAP {value:.4f} (ties by index)\n")
    sys.stdout.write(f"results in {config.output_dir}\n")
    return 0


def add_train_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``fusnet`` sub-command parsers."""
    train_p = commands.add_parser(
        "train", help="train Multi-FusNet and evaluate it on the test split",
        description="Train one model per bit length (paper: 12 24 32 48) and write config.json, "
        "metrics.json, codes.npz and manifest.json under --output-dir. Defaults are the paper's "
        "recipe; e.g. `fusnet train --dataset cub200 --root /data --backbone resnet50`. "
        "The synthetic default needs no download.",
    )
    from fusnet.experiments.recipes import RECIPES

    train_p.add_argument("--config", help="JSON RunConfig (then no other option flags)")
    train_p.add_argument(
        "--profile", choices=sorted(RECIPES),
        help="start from a profile's training recipe (fusnet.experiments.recipes: backbone, "
        "image size, mode, epochs, head widths, lr ..., torch threads, and the folder of "
        "--dataset where the recipe has one) instead of the defaults; other flags change it",
    )
    train_p.add_argument("--resume", action="store_true", help="continue an interrupted run exactly")
    add_config_flags(train_p)
    train_p.set_defaults(func=cmd_train)
