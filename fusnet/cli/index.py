"""``fusnet index``: a persistent Hamming index (gallery) over your own images.

``build``, ``convert``, ``add`` and ``search`` over :mod:`fusnet.index`; the parser is
added to the ``fusnet`` command line by :func:`add_index_parser` (:mod:`fusnet.cli`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from fusnet.cli.errors import positive_int


def cmd_index(args: argparse.Namespace) -> int:
    """``fusnet index build|convert|add|search``: print the gallery's size, or the hits."""
    from fusnet import index

    if args.index_command == "build":
        gallery = index.build(
            args.model, args.source, args.output, kind=args.kind, nlist=args.nlist,
            nprobe=args.nprobe, batch_size=args.batch_size, chunk_size=args.chunk_size,
            overwrite=args.overwrite, uri=args.uri, collection=args.collection,
        )
    elif args.index_command == "convert":
        gallery = index.convert(args.dir, args.kind, nlist=args.nlist, nprobe=args.nprobe,
                                uri=args.uri, collection=args.collection, overwrite=args.overwrite)
    elif args.index_command == "add":
        gallery = index.add(args.dir, args.source, model=args.model, batch_size=args.batch_size,
                            chunk_size=args.chunk_size)
    else:
        hits = index.search(args.dir, list(args.images), k=args.k, model=args.model,
                            nprobe=args.nprobe, sheet=args.sheet)
        if args.json:
            rows = [{"query": q, "hits": [dataclasses.asdict(h) for h in row]}
                    for q, row in zip(args.images, hits, strict=True)]
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
            return 0
        for query, row in zip(args.images, hits, strict=True):
            sys.stdout.write(f"{query}\n")
            for h in row:
                sys.stdout.write(f"{h.rank:>4}  d={h.distance:>2}  id={h.id:<8} {h.label:<20} {h.path}\n")
        return 0
    sys.stdout.write(f"{gallery.count} images in {gallery.directory} "
                     f"({gallery.meta['index']['kind']} index, {gallery.meta.get('skipped', 0)} skipped)\n")
    return 0


def add_index_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``index`` and its sub-commands to the ``fusnet`` sub-command parsers."""
    idx = commands.add_parser("index", help="a persistent Hamming index over your own images")
    idx_cmds = idx.add_subparsers(dest="index_command", required=True, metavar="INDEX_COMMAND")
    ib = idx_cmds.add_parser("build", help="encode a folder or CSV of images into a new gallery "
                             "(rerun to resume an interrupted build)")
    ib.add_argument("model", help="an exported model file (fusnet export)")
    ib.add_argument("source", help="a folder of images (recursive; sub-folder = label) or a CSV "
                    "with a path and an optional label column")
    ib.add_argument("--output", required=True, help="the gallery directory")
    ic = idx_cmds.add_parser("convert", help="move a gallery to another index kind (faiss or "
                             "Milvus) from its stored codes, no image read again")
    ic.add_argument("dir", help="the gallery directory")
    for p in (ib, ic):
        p.add_argument("--kind", default="flat", choices=["flat", "ivf", "milvus"],
                       help="flat: exact; ivf: approximate faiss IndexBinaryIVF; milvus: a Milvus "
                       "collection at --uri (default: flat)")
        p.add_argument("--nlist", type=positive_int, help="ivf lists (default: from the gallery size); "
                       "milvus: BIN_IVF_FLAT with this many lists (default: BIN_FLAT)")
        p.add_argument("--nprobe", type=positive_int, help="lists scanned per query (default: 64)")
        p.add_argument("--uri", help="milvus: the server, e.g. http://127.0.0.1:19530")
        p.add_argument("--collection", help="milvus: collection name (default: from the directory)")
        p.add_argument("--overwrite", action="store_true",
                       help="replace a gallery already in --output / a Milvus collection of that name")
    ia = idx_cmds.add_parser("add", help="append a folder or CSV of images to a gallery")
    ia.add_argument("dir", help="the gallery directory")
    ia.add_argument("source", help="a folder of images or a CSV (as for build)")
    ia.add_argument("--model", help="the gallery's model file (default: the one it was built with)")
    for p in (ib, ia):
        p.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass")
        p.add_argument("--chunk-size", type=positive_int, default=512, help="images per saved chunk (resume unit)")
    isr = idx_cmds.add_parser("search", help="query images -> their k nearest gallery images")
    isr.add_argument("dir", help="the gallery directory")
    isr.add_argument("images", nargs="+", help="query image files")
    isr.add_argument("--k", type=positive_int, default=10)
    isr.add_argument("--model", help="the gallery's model file (default: the one it was built with)")
    isr.add_argument("--nprobe", type=positive_int, help="ivf lists scanned per query")
    isr.add_argument("--sheet", help="save a contact sheet PNG here (NAME-1.png, ... for several queries)")
    isr.add_argument("--json", action="store_true", help="print the hits as JSON")
    idx.set_defaults(func=cmd_index)
