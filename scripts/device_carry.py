"""Split the files a lent GPU machine needs into parts that each fit one ``carry``.

The device tool sends at most 64 MiB a call, the working tree included, and the machine
has no network: the shared photos (about 117 MB) and the bundled ImageNet weights (19 MB)
go over in several calls. Each part ``<out>/p<i>/`` keeps the files' paths relative to
their source's name (``data/cub100/CUB_200_2011/...``, ``site/efficientnet_lite0_...``);
``scripts/baselines_gpu.sh`` merges the parts back. Files are copied unchanged (the
same bytes as ``../shared/data``), never re-encoded.

    python scripts/device_carry.py --out .gpu --part-mb 44 \\
        data=../shared/data/cub100 data=../shared/data/flowers17 site=<site-packages>/pkg ...
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

logger = logging.getLogger("device_carry")


def plan_parts(sources: list[tuple[str, Path]], part_bytes: int) -> list[list[tuple[Path, Path]]]:
    """(source file, path inside a part) lists, each part at most ``part_bytes`` (first fit,
    in path order); a single file larger than a part raises ValueError."""
    parts: list[list[tuple[Path, Path]]] = [[]]
    used = [0]
    for prefix, root in sources:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            size = file.stat().st_size
            if size > part_bytes:
                raise ValueError(f"{file} ({size} bytes) is larger than one part ({part_bytes})")
            relative = Path(prefix) / root.name / file.relative_to(root) if root.is_dir() \
                else Path(prefix) / root.name
            if used[-1] + size > part_bytes:
                parts.append([])
                used.append(0)
            parts[-1].append((file, relative))
            used[-1] += size
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(".gpu"))
    parser.add_argument("--part-mb", type=float, default=44.0, help="megabytes (10^6) per part")
    parser.add_argument("sources", nargs="+", help="PREFIX=PATH (a folder or a file)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sources = []
    for item in args.sources:
        prefix, _, path = item.partition("=")
        if not path or not Path(path).exists():
            parser.error(f"{item!r}: give PREFIX=PATH with an existing PATH")
        sources.append((prefix, Path(path).resolve()))
    parts = plan_parts(sources, int(args.part_mb * 1e6))
    shutil.rmtree(args.out, ignore_errors=True)
    for i, part in enumerate(parts, 1):
        for file, relative in part:
            target = args.out / f"p{i}" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)
        logger.info("p%d: %d files, %.1f MB", i, len(part), sum(f.stat().st_size for f, _ in part) / 1e6)


if __name__ == "__main__":
    main()
