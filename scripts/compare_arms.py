"""Print a Markdown table comparing two run folders (e.g. baseline vs full) per bit length.

    python scripts/compare_arms.py results/cub100-cpu baseline full
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(root: Path, first: str, second: str, bits: tuple[int, ...] = (12, 24, 32, 48)) -> None:
    out = sys.stdout
    out.write(
        f"| bits | {first} mAP (index ties / tie-aware) | {second} mAP (index ties / tie-aware) "
        f"| {second} − {first} | selected epoch ({first} / {second}) | train img/s ({first} / {second}) |\n"
        "|---:|---:|---:|---:|---:|---:|\n"
    )
    for k in bits:
        cells, maps, epochs, speeds = [], [], [], []
        for arm in (first, second):
            run = root / arm / f"bits{k}"
            metrics = json.loads((run / "metrics.json").read_text())
            manifest = json.loads((run / "manifest.json").read_text())
            cells.append(f"{metrics['map_index_ties']:.4f} / {metrics['map_tie_aware']:.4f}")
            maps.append(metrics["map_index_ties"])
            epochs.append(str(metrics["selection"]["epoch"]))
            speeds.append(f"{manifest['train_images_per_second']:.0f}")
        out.write(
            f"| {k} | {cells[0]} | {cells[1]} | {maps[1] - maps[0]:+.4f} | {' / '.join(epochs)} "
            f"| {' / '.join(speeds)} |\n"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
