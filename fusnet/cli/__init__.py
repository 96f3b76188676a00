"""The ``fusnet`` command line: train, encode, evaluate, search, data, export, index, reproduce
(``fusnet <command> --help``); ``train``, ``encode`` and ``index`` have a module each, and
:mod:`fusnet.cli.errors` reports failures."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fusnet.cli.encode import add_encode_parser, cmd_encode
from fusnet.cli.errors import debug_requested, positive_int, report
from fusnet.cli.index import add_index_parser
from fusnet.cli.train import add_train_parser, cmd_train
from fusnet.errors import FusnetError

__all__ = [
    "build_parser", "cmd_data", "cmd_encode", "cmd_evaluate", "cmd_export", "cmd_reproduce",
    "cmd_search", "cmd_train", "main",
]


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``fusnet evaluate``: the retrieval metrics of a codes file, printed as JSON."""
    from fusnet.eval.encoding import load_codes
    from fusnet.eval.metrics import evaluate_retrieval
    from fusnet.runtime import atomic_write_text

    codes = load_codes(Path(args.codes))
    metrics = evaluate_retrieval(codes["query_codes"], codes["db_codes"], codes["query_labels"],
                                 codes["db_labels"], ks=tuple(args.k))
    text = json.dumps(metrics, indent=2, default=float)
    if args.output:
        atomic_write_text(Path(args.output), text + "\n")
    sys.stdout.write(text + "\n")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """``fusnet search``: a query image's top-k database images of a run."""
    from fusnet.serve.search import search_image

    hits = search_image(Path(args.run), Path(args.image), k=args.k, sheet=args.sheet, device=args.device)
    for rank, hit in enumerate(hits, 1):
        sys.stdout.write(f"{rank:>3}  d={hit['distance']:>2}  {hit['class_name']:<40} {hit['path']}\n")
    if args.sheet:
        sys.stdout.write(f"contact sheet: {args.sheet}\n")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """``fusnet data list|download|verify``."""
    from fusnet.data import DATASETS, build_dataset

    if args.data_command == "list":
        sys.stdout.write("".join(f"{name}\n" for name in sorted(DATASETS)))
    elif args.data_command == "download":
        from fusnet.data.download import download_dataset

        path = download_dataset(args.name, Path(args.root), force=args.force)
        sys.stdout.write(f"{args.name} ready under {path}\n")
    else:  # verify (argparse allows no other)
        for split in ("train", "test"):
            dataset = build_dataset(args.name, args.root, split)
            sys.stdout.write(f"{args.name} {split}: {len(dataset)} images, "
                             f"{dataset.num_classes} classes\n")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``fusnet reproduce``: a profile's notebooks; exit status 1 when one failed."""
    from fusnet.experiments.reproduce import reproduce, summary_table

    logging.getLogger("papermill").setLevel(logging.WARNING)  # one line per notebook is ours
    changes = {k: v for k, v in (("data_root", args.data_root), ("device", args.device)) if v}
    results = reproduce(args.profile, args.notebooks, output_root=args.output_root,
                        force=args.force, kernel=args.kernel, changes=changes)
    sys.stdout.write(summary_table(results, args.output_root) + "\n")
    return 1 if any(r.status == "failed" for r in results) else 0


def cmd_export(args: argparse.Namespace) -> int:
    """``fusnet export``: a finished run as one self-contained model file."""
    from fusnet.serve.export import export_model, read_export

    path = export_model(Path(args.run), Path(args.output))
    info = read_export(path)
    sys.stdout.write(f"{info['bits']}-bit model {info['model_id']} -> {path}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``fusnet`` parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="fusnet", description=(
        "Multi-FusNet fine-grained hashing: train models, encode images to binary codes, "
        "evaluate retrieval, search, and fetch datasets."))
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error too (or set FUSNET_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_parser(commands)
    add_encode_parser(commands)

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

    from fusnet.experiments.profiles import NOTEBOOKS, PROFILES

    rep = commands.add_parser(
        "reproduce", help="run the paper's experiments: the notebooks of a profile (papermill)",
        description="Execute notebooks/*.ipynb with a profile's parameters (fusnet.experiments.profiles): "
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
    """Run one ``fusnet`` command; the exit status (errors: :mod:`fusnet.cli.errors`)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (FusnetError, KeyboardInterrupt) as exc:
        if debug_requested(args.debug):
            raise
        return report(exc)  # one line on stderr; 2 usage/config, 1 runtime (fusnet.cli.errors)
