"""Re-evaluate finished top-stage runs at another test image size (nothing is trained).

Issue 27's probe of ``data.eval_image_size``: each run folder's trained model (``model.pt``)
encodes the validation and test splits from the caches of a run that is the same but for
``data.eval_image_size``, and the script prints (and with ``--json`` writes) the validation
and test mAP beside the run's own. It reads the caches only; a missing one is an error, not
a cold caching. Run it alone on the machine (it is a torch process of its own).

    python scripts/eval_size_probe.py --size 224 --json OUT.json RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from fusnet import runtime
from fusnet.config import RunConfig
from fusnet.train import batches
from fusnet.train.loop import Trainer, load_checkpoint

logger = logging.getLogger("eval_size_probe")


def refuse_to_cache(*args, **kwargs):
    raise RuntimeError("a feature cache this probe needs is missing: make it with a run first")


def probe(run: Path, size: int, scratch: Path) -> dict:
    """Validation and test mAP of ``run``'s model with its test transform at ``size`` px."""
    raw = json.loads((run / "config.json").read_text())
    raw["data"]["eval_image_size"] = size
    raw["output_dir"] = str(scratch / run.name)
    trainer = Trainer(RunConfig.from_dict(raw))
    trainer.setup()
    trainer.model.load_state_dict(load_checkpoint(run / "model.pt")["model"])
    start = time.perf_counter()
    val_map = trainer.evaluator.validation_map()
    test, _ = trainer.evaluator.test()
    metrics = json.loads((run / "metrics.json").read_text())
    return {"run": run.name, "bits": raw["model"]["bits"], "seed": raw["seed"],
            "image_size": raw["data"]["image_size"], "eval_image_size": size,
            "val_map": val_map, "test_map": test["map"],
            "run_val_map": metrics["selection"]["val_map"],
            "run_test_map": metrics["map_index_ties"],
            "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    parser.add_argument("--size", type=int, required=True, help="the test transform's size")
    parser.add_argument("--json", type=Path, help="write the rows and the machine here")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/eval_size_probe"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    batches.compute_levels = refuse_to_cache
    rows = []
    for run in args.runs:
        rows.append(probe(run, args.size, args.scratch))
        logger.info("%(run)s at %(eval_image_size)d px: val %(val_map).4f test %(test_map).4f "
                    "(the run's own: %(run_val_map).4f / %(run_test_map).4f)", rows[-1])
    if args.json:
        runtime.write_json(args.json, {
            "code": runtime.code_version(), "threads": torch.get_num_threads(),
            "device": runtime.device_description(torch.device("cpu")), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
