"""The ``fusnet`` command line: train, encode, evaluate, search, data, export, index,
reproduce (the ``index`` commands in :mod:`fusnet.cli_index`).

Run ``fusnet <command> --help`` for each command's options. Training options
come either from flags or from a JSON config file (``--config``), never both.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusnet.cli_errors import debug_requested, non_negative_int, positive_int, report
from fusnet.cli_index import add_index_parser
from fusnet.config import (
    PAPER_BITS,
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
)
from fusnet.errors import ConfigError, FusnetError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("fusnet")

SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "run": RunConfig,
}
OPTIONS_DEST = "options-"
"""``dest`` section prefix of a method's option flags (``cfg__options-adsh__num_samples``)."""


def _attribute_help(cls: type) -> dict[str, str]:
    """Field descriptions from a dataclass's Google-style "Attributes:" docstring."""
    text = cls.__doc__ or ""
    helps: dict[str, str] = {}
    current = None
    for line in text.split("Attributes:", 1)[-1].splitlines():
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


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """The RunConfig sections' flags, then each method's options in its own group
    (``--<method>-<option>``, from the registry: ``fusnet.baselines.METHODS``)."""
    from fusnet.baselines import METHODS

    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{section} options")
        helps = _attribute_help(cls)
        for f in dataclasses.fields(cls):
            if f.name in SECTIONS or f.name == "options":  # RunConfig's nested sections
                continue
            flag = "--" + f.name.replace("_", "-")
            dest = f"cfg__{section}__{f.name}"
            if f.name == "bits":
                group.add_argument(
                    flag, dest=dest, type=int, nargs="+", default=None,
                    help=f"hash code length(s); one run per length (default: {' '.join(map(str, PAPER_BITS))})",
                )
            elif section == "run" and f.name == "method":
                _add_flag(group, flag, dest, f, helps, choices=METHODS.choices())
            else:
                _add_flag(group, flag, dest, f, helps)
    for method, method_cls in METHODS.items():
        options = method_cls.Options
        if not dataclasses.fields(options):
            continue
        group = parser.add_argument_group(f"{method} options (with --method {method})")
        helps = _attribute_help(options)
        for f in dataclasses.fields(options):
            flag = f"--{method}-" + f.name.replace("_", "-")
            _add_flag(group, flag, f"cfg__{OPTIONS_DEST}{method}__{f.name}", f, helps)


def _config_from_args(args: argparse.Namespace) -> tuple[RunConfig, tuple[int, ...]]:
    given = {k: v for k, v in vars(args).items() if k.startswith("cfg__") and v is not None}
    if args.config:
        if given:
            flags = ", ".join(_flag_of(k) for k in given)
            raise ConfigError(
                f"--config {args.config} was given together with {flags}; put every option in the "
                "config file, or pass flags only"
            )
        config = RunConfig.from_json(args.config)
        return config, (config.model.bits,)
    changes: dict[str, Any] = {}
    bits: tuple[int, ...] = PAPER_BITS
    chosen = given.get("cfg__run__method", RunConfig().method)
    for key, value in given.items():
        _, section, name = key.split("__")
        if name == "bits":
            bits = tuple(value)
            continue
        if section.startswith(OPTIONS_DEST):
            method = section.removeprefix(OPTIONS_DEST)
            if method != chosen:
                raise ConfigError(f"{_flag_of(key)} is an option of --method {method}, but the "
                                  f"method is {chosen}; {_method_flags(chosen)}")
            changes[f"options.{name}"] = value
            continue
        changes[name if section == "run" else f"{section}.{name}"] = value
    return RunConfig().replace(**changes), bits


def _flag_of(key: str) -> str:
    """The flag of a ``cfg__<section>__<name>`` destination."""
    _, section, name = key.split("__")
    prefix = section.removeprefix(OPTIONS_DEST) + "_" if section.startswith(OPTIONS_DEST) else ""
    return "--" + (prefix + name).replace("_", "-")


def _method_flags(method: str) -> str:
    """What ``method``'s option flags are, for messages."""
    from fusnet.config import options_class

    names = [f.name for f in dataclasses.fields(options_class(method))]
    if not names:
        return f"{method} has no options of its own"
    return f"{method}'s options: " + ", ".join(f"--{method}-" + n.replace("_", "-") for n in names)


# --- commands ---------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from fusnet.train import train, train_bit_lengths

    config, bits = _config_from_args(args)
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


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from fusnet.checkpoints import load_model
    from fusnet.data import build_dataset
    from fusnet.data.transforms import build_transform
    from fusnet.evaluate import encode_dataset
    from fusnet.retrieval import pack_codes
    from fusnet.run_data import dataset_kwargs
    from fusnet.runtime import atomic_savez, resolve_device

    device = resolve_device(args.device)
    model, config = load_model(args.model, device)
    transform = build_transform(
        config.data.image_size, train=False, mean=model.backbone.mean, std=model.backbone.std
    )
    same_data = args.dataset in (None, config.data.dataset)
    dataset = build_dataset(
        args.dataset or config.data.dataset, args.root or config.data.root, args.split,
        transform=transform, **(dataset_kwargs(config) if same_data else {}),
    )
    learned = _learned_database_codes(args, config, same_data)
    if learned is not None:
        codes, labels = learned
        expected = getattr(dataset, "labels", None)
        if len(codes) != len(dataset) or (
            expected is not None and not np.array_equal(np.asarray(expected), labels.numpy())
        ):
            raise FusnetError(
                f"{Path(args.model).parent / 'codes.npz'}: its {len(codes)} database codes do not "
                f"line up with the {len(dataset)} images of this training split (other data or "
                "order); pass --network-codes to encode them with the network"
            )
        source = f"read from {Path(args.model).parent / 'codes.npz'}"
    else:
        codes, labels, speed = encode_dataset(
            model, dataset, device, args.batch_size, args.num_workers
        )
        source = f"{speed:.1f} img/s"
    atomic_savez(
        Path(args.output), bits=np.int64(codes.shape[1]), codes=pack_codes(codes), labels=labels.numpy(),
        paths=np.array([str(p) for p, _ in getattr(dataset, "samples", [])]),
    )
    sys.stdout.write(f"{len(codes)} codes of {codes.shape[1]} bits -> {args.output} ({source})\n")
    return 0


def _learned_database_codes(
    args: argparse.Namespace, config: RunConfig, same_data: bool
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The run's evaluated database codes for ``encode --split train``, or None.

    ADSH, SEMICON and ExchNet retrieve from codes learned for the training images (V),
    not from the network's codes of them; ``fusnet encode --split train`` of such a run
    gives the database it was evaluated with: the ``db_codes`` of the ``codes.npz``
    beside the model (V for the fit images; network codes for held-out validation
    images, ADSH's out-of-sample extension), unless ``--network-codes`` asks for the
    network's codes of every image.
    """
    import torch

    from fusnet.baselines import LEARNED_DATABASE, MULTIFUSNET, build_method
    from fusnet.evaluate import load_codes

    if args.split != "train" or not same_data or args.network_codes:
        return None
    if config.method == MULTIFUSNET or build_method(config.method).database != LEARNED_DATABASE:
        return None
    path = Path(args.model).parent / "codes.npz"
    if not path.is_file():
        raise FusnetError(
            f"{config.method} retrieves from its learned database codes V, kept in codes.npz "
            f"beside the model, but {path} is missing; pass --network-codes to encode the "
            "training images with the network instead"
        )
    logger.info("%s: the training split's codes are the evaluated database (learned V) from %s",
                config.method, path)
    saved = load_codes(path)
    return torch.as_tensor(saved["db_codes"]), torch.as_tensor(saved["db_labels"])


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fusnet.evaluate import load_codes
    from fusnet.metrics import evaluate_retrieval

    codes = load_codes(Path(args.codes))
    metrics = evaluate_retrieval(
        codes["query_codes"], codes["db_codes"], codes["query_labels"], codes["db_labels"],
        ks=tuple(args.k),
    )
    text = json.dumps(metrics, indent=2, default=float)
    if args.output:
        from fusnet.runtime import atomic_write_text

        atomic_write_text(Path(args.output), text + "\n")
    sys.stdout.write(text + "\n")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from fusnet.search import search_image

    hits = search_image(Path(args.run), Path(args.image), k=args.k, sheet=args.sheet, device=args.device)
    for rank, hit in enumerate(hits, 1):
        sys.stdout.write(f"{rank:>3}  d={hit['distance']:>2}  {hit['class_name']:<40} {hit['path']}\n")
    if args.sheet:
        sys.stdout.write(f"contact sheet: {args.sheet}\n")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from fusnet.data import DATASETS, build_dataset

    if args.data_command == "list":
        for name in sorted(DATASETS):
            sys.stdout.write(f"{name}\n")
        return 0
    if args.data_command == "download":
        from fusnet.data.download import download_dataset

        path = download_dataset(args.name, Path(args.root), force=args.force)
        sys.stdout.write(f"{args.name} ready under {path}\n")
        return 0
    if args.data_command == "verify":
        for split in ("train", "test"):
            dataset = build_dataset(args.name, args.root, split)
            sys.stdout.write(
                f"{args.name} {split}: {len(dataset)} images, {dataset.num_classes} classes\n"
            )
        return 0
    raise FusnetError(f"unknown data command {args.data_command!r}")


def cmd_reproduce(args: argparse.Namespace) -> int:
    from fusnet.experiments.reproduce import reproduce, summary_table

    logging.getLogger("papermill").setLevel(logging.WARNING)  # one line per notebook is ours
    changes = {k: v for k, v in (("data_root", args.data_root), ("device", args.device)) if v}
    results = reproduce(
        args.profile, args.notebooks, output_root=args.output_root, force=args.force,
        kernel=args.kernel, changes=changes,
    )
    sys.stdout.write(summary_table(results, args.output_root) + "\n")
    return 1 if any(r.status == "failed" for r in results) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from fusnet.export import export_model, read_export

    path = export_model(Path(args.run), Path(args.output))
    info = read_export(path)
    sys.stdout.write(f"{info['bits']}-bit model {info['model_id']} -> {path}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusnet",
        description="Multi-FusNet fine-grained hashing: train models, encode images to binary "
        "codes, evaluate retrieval, search, and fetch datasets.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error too (or set FUSNET_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train_p = commands.add_parser(
        "train", help="train Multi-FusNet and evaluate it on the test split",
        description="Train one model per bit length (paper: 12 24 32 48) and write config.json, "
        "metrics.json, codes.npz and manifest.json under --output-dir. Defaults are the paper's "
        "recipe; e.g. `fusnet train --dataset cub200 --root /data --backbone resnet50`. "
        "The synthetic default needs no download.",
    )
    train_p.add_argument("--config", help="JSON RunConfig (then no other option flags)")
    train_p.add_argument("--resume", action="store_true", help="continue an interrupted run exactly")
    _add_config_flags(train_p)
    train_p.set_defaults(func=cmd_train)

    enc = commands.add_parser("encode", help="images -> packed binary codes (.npz)")
    enc.add_argument("--model", required=True, help="a run's model.pt")
    enc.add_argument("--dataset", help="dataset name (default: the run's)")
    enc.add_argument("--root", help="dataset root (default: the run's)")
    enc.add_argument("--split", default="test", choices=["train", "test", "val", "fit"])
    enc.add_argument("--output", required=True, help="output .npz")
    enc.add_argument("--batch-size", type=positive_int, default=64)
    enc.add_argument("--num-workers", type=non_negative_int, default=0)
    enc.add_argument("--device", default="auto")
    enc.add_argument(
        "--network-codes", action="store_true",
        help="ADSH-style methods: encode --split train with the network instead of giving "
        "the evaluated database (learned V) from the run's codes.npz",
    )
    enc.set_defaults(func=cmd_encode)

    ev = commands.add_parser("evaluate", help="codes -> retrieval metrics (mAP, precision@k)")
    ev.add_argument("--codes", required=True, help="a run's codes.npz")
    ev.add_argument("--k", type=positive_int, nargs="+", default=[1, 5, 10, 100], help="precision@k cut-offs")
    ev.add_argument("--output", help="write the metrics JSON here too")
    ev.set_defaults(func=cmd_evaluate)

    se = commands.add_parser("search", help="a query image -> its top-k database images")
    se.add_argument("run", help="a run folder (holding model.pt and codes.npz)")
    se.add_argument("image", help="query image file")
    se.add_argument("--k", type=positive_int, default=10)
    se.add_argument("--sheet", help="save a contact sheet PNG of the results here")
    se.add_argument("--device", default="auto")
    se.set_defaults(func=cmd_search)

    data = commands.add_parser("data", help="list, download or verify datasets")
    data_cmds = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    data_cmds.add_parser("list", help="registered dataset names")
    dl = data_cmds.add_parser("download", help="fetch a dataset from its official source")
    dl.add_argument("name")
    dl.add_argument("--root", required=True, help="where the official layout is extracted")
    dl.add_argument("--force", action="store_true", help="ignore the done marker: re-verify every file (fetching missing or bad ones) and extract again")
    ve = data_cmds.add_parser("verify", help="check a dataset's layout and every image")
    ve.add_argument("name")
    ve.add_argument("--root", required=True)
    data.set_defaults(func=cmd_data)

    ex = commands.add_parser(
        "export", help="a finished run -> one self-contained model file (fusnet.load)",
        description="Write weights, config, class names, proxy codes and the test transform into "
        "one file; load it with fusnet.load(FILE) or torch.hub (hubconf.py).",
    )
    ex.add_argument("run", help="a run folder holding model.pt (e.g. runs/demo/bits48), or the file")
    ex.add_argument("--output", required=True, help="model file to write (e.g. model.fusnet)")
    ex.set_defaults(func=cmd_export)

    add_index_parser(commands)

    from fusnet.profiles import NOTEBOOKS, PROFILES

    rep = commands.add_parser(
        "reproduce", help="run the paper's experiments: the notebooks of a profile (papermill)",
        description="Execute notebooks/*.ipynb with a profile's parameters (fusnet.profiles): "
        "smoke (synthetic, minutes), cpu (the real photos in ../shared/data, about 3 hours), paper "
        "(the paper's recipe on a GPU). Tables, figures, metrics.json and the executed notebook "
        "go to OUTPUT_ROOT/<notebook>/<profile>/. Notebooks with complete outputs are skipped and "
        "finished training runs reused, so rerunning resumes where it stopped.",
    )
    rep.add_argument("--profile", required=True, choices=sorted(PROFILES))
    rep.add_argument("--notebooks", nargs="+", metavar="NAME",
                     help=f"names or prefixes such as 01 (default: all of {', '.join(NOTEBOOKS)})")
    rep.add_argument("--output-root", default="results", help="results folder (default: results)")
    rep.add_argument("--data-root", help="folder holding one folder per dataset "
                     "(<root>/cub200, ...); needed by the paper profile")
    rep.add_argument("--device", help="override the profile's device (cpu, cuda, auto)")
    rep.add_argument("--force", action="store_true", help="rerun notebooks whose outputs are complete")
    rep.add_argument("--kernel", default="python3", help="Jupyter kernel (default: python3)")
    rep.set_defaults(func=cmd_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (FusnetError, KeyboardInterrupt) as exc:
        if debug_requested(args.debug):
            raise
        return report(exc)  # one line on stderr; 2 usage/config, 1 runtime (fusnet.cli_errors)
