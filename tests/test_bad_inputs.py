"""Every bad input a clear error, every fault survived (issue 14): a table of tries.

Each try is one parametrised case that does what a user might do wrong (or what might
go wrong under them) and asserts that the message names the culprit and that no
output folder is left half-written. Everything runs on tiny synthetic data in tmp_path.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fusnet.train.batches as run_data_module
import fusnet.train.loop as train_module
from fusnet import runtime
from fusnet.cli import main as cli_main
from fusnet.config import RunConfig
from fusnet.data import build_dataset
from fusnet.data.transforms import build_transform
from fusnet.errors import CheckpointError, ConfigError, DataError, OutputError, RunLockError
from fusnet.eval.encoding import load_codes, save_codes
from fusnet.models.multifusnet import MultiFusNet
from fusnet.train.features import CachedLevels, load_or_compute_levels
from fusnet.train.lock import LOCK_NAME, RunLock
from fusnet.train.loop import CHECKPOINT_FORMAT, train
from tests.conftest import interrupt_in_epoch
from tests.test_train import tiny_config

TINY_FLAGS = [
    "--backbone", "resnet18", "--pretrained", "none", "--bits", "8", "--device", "cpu",
    "--image-size", "64", "--batch-size", "16", "--block-mid", "16", "--level-dim", "32",
    "--hash-hidden", "16", "--transformer-dim", "16", "--transformer-heads", "2",
    "--epochs", "1", "--mode", "frozen", "--select", "last",
]


# --- small files ------------------------------------------------------------------------


def _png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash((path.name, colour))) % 2**32)
    noise = rng.integers(-20, 20, size=(size[1], size[0], 3))
    pixels = np.clip(np.asarray(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _truncated_jpeg(path: Path) -> Path:
    """A JPEG cut in half: PIL's structural check passes, decoding fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 255, size=(64, 64, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


def _imagefolder(root: Path, per_class: int = 6) -> Path:
    """root/train/<class>/*.png and root/test/<class>/*.png, four colour classes."""
    for split, count in (("train", per_class), ("test", 2)):
        for c, colour in enumerate(COLOURS):
            for i in range(count):
                _png(root / split / f"class{c}" / f"{i}.png", colour)
    return root


def _codes_file(path: Path, bits: int = 8, n: int = 6) -> Path:
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 2, (n, bits), generator=gen).float() * 2 - 1
    labels = torch.arange(n) % 3
    save_codes(path, codes, labels, codes, labels)
    return path


def _fake_run(run: Path, model_bits: int, codes_bits: int) -> Path:
    """A run folder with an untrained tiny model.pt and a codes.npz of ``codes_bits``."""
    config = tiny_config(run.parent, output_dir=str(run), **{"model.bits": model_bits})
    model = MultiFusNet(config.model, num_classes=4)
    runtime.atomic_torch_save(
        {"format": CHECKPOINT_FORMAT, "config": config.to_dict(), "num_classes": 4,
         "model": model.state_dict(), "class_names": ["a", "b", "c", "d"]},
        run / "model.pt",
    )
    _codes_file(run / "codes.npz", bits=codes_bits)
    return run


def _leftovers(folder: Path) -> list[str]:
    """Temporary files of interrupted atomic writes under ``folder``."""
    return sorted(p.name for p in folder.rglob("*.tmp"))


# --- the command line: one line on stderr, exit 2 (config) or 1 (runtime) ---------------


def _evaluate(tmp: Path, make: Callable[[Path], Path]) -> list[str]:
    return ["evaluate", "--codes", str(make(tmp))]


def _missing_codes(tmp: Path) -> Path:
    return tmp / "nope.npz"


def _text_as_codes(tmp: Path) -> Path:
    path = tmp / "codes.txt"
    path.write_text("these are not codes\n")
    return path


def _npy_as_codes(tmp: Path) -> Path:
    path = tmp / "array.npz"
    with path.open("wb") as handle:
        np.save(handle, np.zeros(3))
    return path


def _truncated_codes(tmp: Path) -> Path:
    path = _codes_file(tmp / "cut.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _foreign_npz(tmp: Path) -> Path:
    path = tmp / "foreign.npz"
    np.savez(path, x=np.zeros(3))
    return path


def _other_bit_length_codes(tmp: Path) -> Path:
    """A file whose stored bit length (48) does not match its packed codes (8 bits)."""
    path = _codes_file(tmp / "mixed.npz", bits=8)
    with np.load(path) as saved:
        arrays = {k: saved[k] for k in saved.files}
    arrays["bits"] = np.int64(48)
    np.savez(path, **arrays)
    return path


def _train(tmp: Path, *flags: str) -> list[str]:
    return ["train", *TINY_FLAGS, "--output-dir", str(tmp / "out"), *flags]


def _csv_root_without_train_csv(tmp: Path) -> str:
    root = tmp / "csvdata"
    root.mkdir()
    (root / "test.csv").write_text("path,label\na.png,0\n")
    return str(root)


def _empty_folder(tmp: Path) -> str:
    root = tmp / "empty"
    root.mkdir()
    return str(root)


def _empty_class_folder(tmp: Path) -> str:
    root = _imagefolder(tmp / "folder")
    (root / "train" / "class9").mkdir()
    return str(root)


def _config_file(tmp: Path, text: str) -> str:
    path = tmp / "run.json"
    path.write_text(text)
    return str(path)


def _config_with_bad_values(tmp: Path) -> str:
    raw = tiny_config(tmp).to_dict()
    raw["optim"]["lr"] = -1
    raw["data"]["batch_size"] = 0
    return _config_file(tmp, json.dumps(raw))


def _encode_zero_byte_model(tmp: Path) -> list[str]:
    (tmp / "zero.pt").write_bytes(b"")
    return ["encode", "--model", str(tmp / "zero.pt"), "--output", str(tmp / "out" / "c.npz"),
            "--device", "cpu"]


def _search_codes_of_other_bits(tmp: Path) -> list[str]:
    run = _fake_run(tmp / "run", model_bits=8, codes_bits=16)
    query = _png(tmp / "query.png", (10, 10, 10))
    return ["search", str(run), str(query), "--device", "cpu", "--sheet", str(tmp / "out" / "s.png")]


def _evaluate_output_not_writable(tmp: Path) -> list[str]:
    codes = _codes_file(tmp / "codes.npz")
    (tmp / "out").write_text("a file where a folder is needed\n")
    return ["evaluate", "--codes", str(codes), "--output", str(tmp / "out" / "metrics.json")]


def _train_into_a_locked_folder(tmp: Path) -> list[str]:
    folder = tmp / "out" / "bits8"
    folder.mkdir(parents=True)
    holder = os.getppid()  # a live process that is not this one
    (folder / LOCK_NAME).write_text(json.dumps({"pid": holder, "host": os.uname().nodename}))
    return _train(tmp, "--dataset", "synthetic", "--synthetic-classes", "4")


CLI_TRIES: dict[str, tuple[Callable[[Path], list[str]], int, list[str]]] = {
    # id: (argv from tmp_path, exit status, strings the one stderr line must hold)
    "evaluate-missing-codes": (lambda t: _evaluate(t, _missing_codes), 1,
                               ["nope.npz", "does not exist", "fusnet encode"]),
    "evaluate-text-file": (lambda t: _evaluate(t, _text_as_codes), 1,
                           ["codes.txt", "not an .npz archive"]),
    "evaluate-npy-file": (lambda t: _evaluate(t, _npy_as_codes), 1, ["array.npz", "not an .npz"]),
    "evaluate-truncated-codes": (lambda t: _evaluate(t, _truncated_codes), 1,
                                 ["cut.npz", "cut short"]),
    "evaluate-foreign-npz": (lambda t: _evaluate(t, _foreign_npz), 1,
                             ["foreign.npz", "not a fusnet codes file", "db_codes"]),
    "evaluate-codes-of-another-bit-length": (lambda t: _evaluate(t, _other_bit_length_codes), 1,
                                             ["mixed.npz", "48-bit"]),
    "evaluate-output-not-writable": (_evaluate_output_not_writable, 1,
                                     ["metrics.json", "cannot write"]),
    "train-negative-lr": (lambda t: _train(t, "--lr", "-1"), 2, ["optim.lr (--lr) = -1.0", "> 0"]),
    "train-several-bad-values": (
        lambda t: _train(t, "--lr", "-1", "--batch-size", "0", "--momentum", "1.5"), 2,
        ["3 problems", "--lr", "--batch-size", "--momentum"],
    ),
    "train-one-bad-bit-length": (lambda t: _train(t, "--bits", "8", "0"), 2,
                                 ["model.bits (--bits) = 0", ">= 1"]),
    "train-repeated-bit-length": (lambda t: _train(t, "--bits", "8", "8"), 2,
                                  ["--bits 8 8", "once"]),
    "train-unknown-device": (lambda t: _train(t, "--device", "gpu"), 2, ["'gpu'", "cuda:N"]),
    "train-unknown-backbone": (lambda t: _train(t, "--backbone", "resnet5"), 2,
                               ["resnet5", "resnet18"]),
    "train-unknown-dataset": (lambda t: _train(t, "--dataset", "cub"), 2, ["'cub'", "cub200"]),
    "train-missing-root": (lambda t: _train(t, "--dataset", "cub200", "--root", str(t / "nowhere")),
                           2, ["nowhere", "no such folder"]),
    "train-csv-without-train-csv": (
        lambda t: _train(t, "--dataset", "csv", "--root", _csv_root_without_train_csv(t)), 1,
        ["train.csv", "path,label"],
    ),
    "train-empty-dataset-folder": (
        lambda t: _train(t, "--dataset", "imagefolder", "--root", _empty_folder(t)), 1,
        ["no class folders", "empty"],
    ),
    "train-class-without-images": (
        lambda t: _train(t, "--dataset", "imagefolder", "--root", _empty_class_folder(t)), 1,
        ["class9", "no image"],
    ),
    "train-config-and-flags": (
        lambda t: ["train", "--config", _config_file(t, "{}"), "--epochs", "3",
                   "--output-dir", str(t / "out")], 2, ["run.json", "--epochs"],
    ),
    "train-config-missing": (lambda t: ["train", "--config", str(t / "none.json")], 2,
                             ["none.json", "does not exist"]),
    "train-config-not-json": (lambda t: ["train", "--config", _config_file(t, "{oops")], 2,
                              ["run.json", "not valid JSON"]),
    "train-config-bad-values": (lambda t: ["train", "--config", _config_with_bad_values(t)], 2,
                                ["--lr", "--batch-size"]),
    "train-into-a-locked-folder": (_train_into_a_locked_folder, 1, [f"PID {os.getppid()}"]),
    "encode-zero-byte-checkpoint": (_encode_zero_byte_model, 1, ["zero.pt", "empty file"]),
    "search-codes-of-another-bit-length": (_search_codes_of_other_bits, 1,
                                           ["codes.npz", "16-bit", "8-bit"]),
    "reproduce-unknown-profile": (lambda t: ["reproduce", "--profile", "nope"], 2, ["nope"]),
    "evaluate-k-zero": (lambda t: ["evaluate", "--codes", str(_codes_file(t / "c.npz")), "--k", "0"],
                        2, ["--k", "integer >= 1"]),
    "search-k-negative": (lambda t: ["search", str(t), str(t / "q.png"), "--k", "-2"], 2,
                          ["--k", "integer >= 1"]),
}
ARGPARSE_TRIES = {"reproduce-unknown-profile", "evaluate-k-zero", "search-k-negative"}


@pytest.mark.parametrize("name", list(CLI_TRIES))
def test_cli_try(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_argv, status, culprits = CLI_TRIES[name]
    argv = make_argv(tmp_path)
    capsys.readouterr()
    try:
        code = cli_main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == status, err
    for culprit in culprits:
        assert culprit in err, (culprit, err)
    assert "Traceback" not in err and "fusnet data download csv" not in err
    if status and name not in ARGPARSE_TRIES:
        assert len([line for line in err.splitlines() if line.startswith("fusnet:")]) == 1, err
    # nothing half-written: no results, no temporary files
    out = tmp_path / "out"
    if out.is_dir():
        written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
        assert written in ([], ["bits8"], ["bits8", f"bits8/{LOCK_NAME}"]), written
    assert _leftovers(tmp_path) == []


def test_cli_debug_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=r"nope\.npz"):
        cli_main(["--debug", "evaluate", "--codes", str(tmp_path / "nope.npz")])
    monkeypatch.setenv("FUSNET_DEBUG", "1")
    with pytest.raises(DataError, match=r"nope\.npz"):
        cli_main(["evaluate", "--codes", str(tmp_path / "nope.npz")])


def test_unexpected_exceptions_keep_their_traceback(tmp_path, monkeypatch) -> None:
    import fusnet.eval.encoding

    def broken(path):
        raise ZeroDivisionError("a bug, not a user error")

    monkeypatch.setattr(fusnet.eval.encoding, "load_codes", broken)
    with pytest.raises(ZeroDivisionError):
        cli_main(["evaluate", "--codes", str(_codes_file(tmp_path / "codes.npz"))])


class _BadItems(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise DataError(f"cannot decode image /photos/{index}.jpg (OSError: truncated)")


def test_an_error_in_a_dataloader_worker_is_reported_by_its_own_message(capsys) -> None:
    from fusnet.cli.errors import report

    with pytest.raises(DataError) as err:
        list(torch.utils.data.DataLoader(_BadItems(), num_workers=1))
    assert "Original Traceback" in str(err.value)  # how torch re-raises it
    assert report(err.value) == 1
    line = capsys.readouterr().err
    assert line.startswith("fusnet: error: cannot decode image /photos/0.jpg (OSError: truncated)")
    assert "Traceback" not in line.split("(--debug")[0]


def test_cli_run_as_a_process_prints_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("FUSNET_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "fusnet", "evaluate", "--codes", str(tmp_path / "nope.npz")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("fusnet: error:") and "nope.npz" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


# --- configuration: every problem at once ---------------------------------------------


def test_config_lists_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        RunConfig().replace(**{"optim.lr": -1.0, "data.batch_size": 0, "model.bits": "12",
                               "model.dropout": 1.0, "eval_every": 0, "mode": "fast"})
    text = str(err.value)
    for culprit in ("--lr", "--batch-size", "--bits", "--dropout", "--eval-every", "'fast'"):
        assert culprit in text, culprit
    assert "6 problems" in text


def test_nan_and_wrong_types_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"optim\.momentum .*finite"):
        RunConfig().replace(**{"optim.momentum": float("nan")})
    with pytest.raises(ConfigError, match=r"data\.skip_bad_images .*true or false"):
        RunConfig().replace(**{"data.skip_bad_images": "yes"})


def test_validation_runs_before_any_weights_data_or_cache_work(tmp_path, monkeypatch) -> None:
    def no_setup(self):
        raise AssertionError("setup reached")

    monkeypatch.setattr(train_module.Trainer, "setup", no_setup)
    config = tiny_config(tmp_path, **{"model.backbone": "resnet5", "data.dataset": "cub200",
                                      "data.root": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError) as err:
        train(config)
    assert "resnet5" in str(err.value) and "nowhere" in str(err.value)
    assert not (tmp_path / "run").exists()


# --- data: named culprits, and odd but valid images that load ----------------------------


def _csv(root: Path, train_rows: list[str], test_rows: list[str], classes: list[str] | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        _png(root / f"{i}.png", COLOURS[i])
    (root / "train.csv").write_text("path,label\n" + "\n".join(train_rows) + "\n")
    (root / "test.csv").write_text("path,label\n" + "\n".join(test_rows) + "\n")
    if classes is not None:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


DATA_TRIES: dict[str, tuple[Callable[[Path], Path], str, list[str]]] = {
    # id: (dataset root from tmp_path, dataset name, strings the DataError must hold)
    "csv-label-out-of-range": (
        lambda t: _csv(t / "d", ["0.png,0", "1.png,5"], ["2.png,1"], ["a", "b"]), "csv",
        ["label 5", "1.png", "train.csv"],
    ),
    "csv-negative-label": (
        lambda t: _csv(t / "d", ["0.png,0", "1.png,-1"], ["2.png,0"], None), "csv",
        ["label -1", "1.png"],
    ),
    "csv-duplicate-path": (
        lambda t: _csv(t / "d", ["0.png,0", "1.png,1", "./0.png,0"], ["2.png,1"], None), "csv",
        ["train.csv", "0.png (2 times)", "one row per image"],
    ),
    "csv-path-in-both-splits": (
        lambda t: _csv(t / "d", ["0.png,0", "1.png,1"], ["1.png,1"], None), "csv",
        ["1.png", "both", "test.csv"],
    ),
}


@pytest.mark.parametrize("name", list(DATA_TRIES))
def test_data_try(name: str, tmp_path: Path) -> None:
    make_root, dataset, culprits = DATA_TRIES[name]
    root = make_root(tmp_path)
    with pytest.raises(DataError) as err:
        build_dataset(dataset, root, "train")
    for culprit in culprits:
        assert culprit in str(err.value), (culprit, str(err.value))


def _odd_image(path: Path, kind: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "grey":
        Image.new("L", (30, 20), 128).save(path)
    elif kind == "grey-alpha":
        Image.new("LA", (30, 20), (128, 200)).save(path)
    elif kind == "palette":
        Image.new("RGB", (30, 20), (10, 120, 200)).convert("P").save(path)
    elif kind == "rgba":
        Image.new("RGBA", (30, 20), (10, 120, 200, 100)).save(path)
    elif kind == "cmyk-jpeg":
        path = path.with_suffix(".jpg")
        Image.new("CMYK", (30, 20), (0, 100, 200, 0)).save(path)
    elif kind == "16-bit":
        Image.fromarray(np.full((20, 30), 32896, dtype=np.uint16)).save(path)  # 128 * 257
    elif kind == "1x1":
        Image.new("RGB", (1, 1), (128, 128, 128)).save(path)
    elif kind == "20000-wide":
        Image.new("RGB", (20_000, 100), (128, 128, 128)).save(path)
    return path


@pytest.mark.parametrize(
    "kind", ["grey", "grey-alpha", "palette", "rgba", "cmyk-jpeg", "16-bit", "1x1", "20000-wide"]
)
def test_odd_images_load_as_8_bit_rgb(kind: str, tmp_path: Path) -> None:
    root = tmp_path / "folder"
    _odd_image(root / "train" / "a" / "odd.png", kind)
    _png(root / "test" / "a" / "plain.png", COLOURS[0])
    dataset = build_dataset("imagefolder", root, "train", skip_bad_images=False, decode=True)
    image, _ = dataset[0]
    assert image.mode == "RGB"
    if kind == "16-bit":  # scaled to 8 bits, not clipped to white
        assert np.asarray(image).mean() == pytest.approx(128, abs=1)
    dataset.transform = build_transform(64, train=False)
    tensor, _ = dataset[0]
    assert tuple(tensor.shape) == (3, 64, 64) and torch.isfinite(tensor).all()


def test_a_dark_16_bit_image_scales_like_a_bright_one_in_training_and_in_export(tmp_path) -> None:
    from fusnet.data.base import to_rgb
    from fusnet.serve.export import open_image

    dark = tmp_path / "dark.png"  # every value <= 255: still 16-bit, so divided by 257 too
    Image.fromarray(np.full((4, 4), 200, dtype=np.uint16)).save(dark)
    with Image.open(dark) as image:
        assert np.asarray(to_rgb(image)).max() == 1
    assert np.asarray(open_image(dark)).max() == 1  # the export path reads it the same way


def test_paths_may_be_path_objects_in_the_python_api(tmp_path: Path) -> None:
    config = RunConfig().replace(output_dir=tmp_path / "run", **{"data.root": tmp_path})
    assert config.data.root == tmp_path


def test_index_sizes_out_of_range_are_usage_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:  # argparse's usage error
        cli_main(["index", "build", str(tmp_path / "m.fusnet"), str(tmp_path),
                  "--output", str(tmp_path / "g"), "--chunk-size", "0"])
    assert stopped.value.code == 2 and "--chunk-size" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_symlink_loops_in_an_imagefolder_are_survived(tmp_path: Path) -> None:
    root = _imagefolder(tmp_path / "folder", per_class=2)
    (root / "train" / "class0" / "loop").symlink_to(root / "train" / "class0")  # folder loop
    (root / "train" / "class1" / "a.png").symlink_to(root / "train" / "class1" / "b.png")
    (root / "train" / "class1" / "b.png").symlink_to(root / "train" / "class1" / "a.png")
    dataset = build_dataset("imagefolder", root, "train")
    assert len(dataset) == 4 * 2  # each image once: no loop followed, no dangling link listed


def test_class_with_one_image_warns_naming_it(tmp_path, caplog) -> None:
    root = tmp_path / "flat"
    for c, colour in enumerate(COLOURS[:2]):
        for i in range(5):
            _png(root / f"class{c}" / f"{i}.png", colour)
    _png(root / "lonely" / "0.png", COLOURS[2])
    train_split = build_dataset("imagefolder", root, "train")
    assert train_split.class_counts()[train_split.class_names.index("lonely")] == 1
    with caplog.at_level(logging.WARNING, logger="fusnet.data"):
        build_dataset("imagefolder", root, "test")
    assert "lonely" in caplog.text and "no image in split 'test'" in caplog.text


def test_truncated_jpeg_stops_naming_it_or_is_dropped_with_the_flag(tmp_path: Path) -> None:
    root = _imagefolder(tmp_path / "folder", per_class=2)
    bad = _truncated_jpeg(root / "train" / "class0" / "cut.jpg")
    plain = build_dataset("imagefolder", root, "train")  # the structural check lets it through
    index = [str(p) for p, _ in plain.samples].index(str(bad))
    with pytest.raises(DataError) as err:
        plain[index]
    assert str(bad) in str(err.value) and "--skip-bad-images" in str(err.value)
    skipping = build_dataset("imagefolder", root, "train", skip_bad_images=True)
    assert len(skipping) == len(plain) - 1 and [p for p, _ in skipping.dropped] == [bad]


# --- the run folder: one writer, atomic files, named damage --------------------------------


def test_a_live_lock_names_its_holder_and_a_stale_one_is_taken_over(tmp_path, caplog) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename}))
    with pytest.raises(RunLockError, match=f"PID {os.getppid()}"):
        RunLock(folder).acquire()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    with caplog.at_level(logging.WARNING, logger="fusnet.train.lock"), RunLock(folder) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        with pytest.raises(RunLockError, match="this process"):
            RunLock(folder).acquire()
    assert f"stale lock {folder / LOCK_NAME} of PID {dead.pid}" in caplog.text
    assert not (folder / LOCK_NAME).exists() and folder.is_dir()  # it existed before


def test_a_lock_held_by_another_process_refuses_until_that_process_dies(tmp_path) -> None:
    folder = tmp_path / "run"
    code = ("import time; from fusnet.train.lock import RunLock; "
            f"RunLock({str(folder)!r}).acquire(); print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockError, match=f"PID {holder.pid}"):
            RunLock(folder).acquire()
    finally:
        holder.kill()  # SIGKILL: no release ran, the kernel dropped the flock
        holder.wait()
    with RunLock(folder) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_a_lock_removes_the_empty_folders_it_made(tmp_path: Path) -> None:
    with RunLock(tmp_path / "a" / "b"):
        assert (tmp_path / "a" / "b" / LOCK_NAME).is_file()
    assert not (tmp_path / "a").exists()


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_keeps_the_old_file_and_names_the_new_one(tmp_path, monkeypatch) -> None:
    target = tmp_path / "metrics.json"
    runtime.write_json(target, {"old": 1})
    codes = _codes_file(tmp_path / "codes.npz")
    before = codes.read_bytes()
    monkeypatch.setattr(runtime.os, "fsync", _disk_full)
    with pytest.raises(OutputError, match=r"metrics\.json.*No space left"):
        runtime.write_json(target, {"new": 2})
    with pytest.raises(OutputError, match=r"codes\.npz"):
        _codes_file(codes, bits=16)
    with pytest.raises(OutputError, match=r"last\.pt"):
        runtime.atomic_torch_save({"x": 1}, tmp_path / "last.pt")
    monkeypatch.undo()

    def ctrl_c(handle) -> None:
        handle.write(b"half of a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the middle of a write
        runtime.atomic_write(target, ctrl_c)
    assert json.loads(target.read_text()) == {"old": 1} and codes.read_bytes() == before
    assert not (tmp_path / "last.pt").exists() and _leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.npz", "metrics.json"]


def test_truncated_checkpoint_and_feature_cache_name_the_file_and_the_fix(tmp_path) -> None:
    cut = tmp_path / "last.pt"
    runtime.atomic_torch_save({"format": CHECKPOINT_FORMAT, "weights": torch.zeros(1000)}, cut)
    cut.write_bytes(cut.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"(?s)last\.pt.*cut short.*delete it"):
        train_module.load_checkpoint(cut)
    cache = tmp_path / "cache.pt"
    cache.write_bytes(b"\x80\x02partial")
    with pytest.raises(CheckpointError, match=r"(?s)cache\.pt.*delete it and rerun"):
        load_or_compute_levels(cache, "key", lambda: CachedLevels([], None, torch.zeros(0)))


def test_codes_round_trip_and_evaluate_reads_them(tmp_path: Path) -> None:
    codes = load_codes(_codes_file(tmp_path / "codes.npz", bits=12))
    assert codes["bits"] == 12 and codes["db_codes"].shape == (6, 12)


# --- training: faults survived ---------------------------------------------------------------


def _another_method_checkpoint(config: RunConfig) -> Path:
    last = Path(config.output_dir) / "checkpoints" / "last.pt"
    runtime.atomic_torch_save(
        {"format": CHECKPOINT_FORMAT, "config": config.replace(method="dpsh").to_dict(),
         "num_classes": 4, "epoch": 1},
        last,
    )
    return last


@pytest.mark.slow
def test_checkpoint_of_another_method_is_refused_naming_it(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, mode="frozen", select="last", **{"optim.epochs": 1})
    last = _another_method_checkpoint(config)
    with pytest.raises(CheckpointError) as err:
        train(config, resume=True)
    assert str(last) in str(err.value) and "method: checkpoint 'dpsh' vs now 'multifusnet'" in str(
        err.value
    )
    assert not (Path(config.output_dir) / "metrics.json").exists()
    assert not (Path(config.output_dir) / LOCK_NAME).exists()


@pytest.mark.slow
def test_bad_image_without_the_flag_stops_naming_it_and_leaves_no_folder(tmp_path) -> None:
    root = _imagefolder(tmp_path / "folder")
    bad = _truncated_jpeg(root / "train" / "class1" / "cut.jpg")
    config = tiny_config(tmp_path, mode="frozen", select="last", **{
        "data.dataset": "imagefolder", "data.root": str(root), "optim.epochs": 1})
    with pytest.raises(DataError) as err:
        train(config)
    assert str(bad) in str(err.value) and "--skip-bad-images" in str(err.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["frozen", "full"])
def test_skip_bad_images_drops_a_file_that_fails_to_decode_and_counts_it(tmp_path, mode) -> None:
    root = _imagefolder(tmp_path / "folder")
    bad = _truncated_jpeg(root / "train" / "class1" / "cut.jpg")
    bad_query = _truncated_jpeg(root / "test" / "class2" / "cut.jpg")
    config = tiny_config(tmp_path, mode=mode, select="last", **{
        "data.dataset": "imagefolder", "data.root": str(root), "data.skip_bad_images": True,
        "optim.epochs": 1})
    result = train(config)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    dropped = manifest["data"]["dropped_images"]
    assert dropped["train"] == {"count": 1, "paths": [str(bad)]}
    assert dropped["test"] == {"count": 1, "paths": [str(bad_query)]}
    assert manifest["data"]["train_images"] == 4 * 6 and result.metrics["map_index_ties"] > 0
    assert not (tmp_path / "run" / LOCK_NAME).exists()


@pytest.mark.slow
def test_ctrl_c_during_caching_and_during_an_epoch_then_resume_gives_the_same_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = train(tiny_config(tmp_path / "a", mode="frozen", select="last"))

    config = tiny_config(tmp_path / "b", mode="frozen", select="last")
    out = Path(config.output_dir)
    real_compute = run_data_module.compute_levels

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_data_module, "compute_levels", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.setattr(run_data_module, "compute_levels", real_compute)
    assert not out.exists()  # nothing was written: the lock removed the folder it made

    interrupt_in_epoch(config, monkeypatch, epoch=1)
    assert not (out / LOCK_NAME).exists()
    resumed = train(config, resume=True)
    assert resumed.metrics["map_index_ties"] == straight.metrics["map_index_ties"]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumes"] == 1
    assert manifest["wall_seconds"] > manifest["wall_seconds_this_process"] > 0
    assert manifest["train_seconds"] > 0
    # the caches were made by the process that stopped in epoch 1, read by the resumed one
    assert manifest["caching_seconds_this_process"] == 0
    assert 0 < manifest["caching_seconds"] < manifest["wall_seconds"]


@pytest.mark.slow
def test_disk_full_at_the_end_of_a_run_then_resume_finishes(tmp_path, monkeypatch) -> None:
    config = tiny_config(tmp_path, mode="frozen", select="last", **{"optim.epochs": 1})
    real_write_json = runtime.write_json

    def full_for_metrics(path, payload):
        if Path(path).name == "metrics.json":
            runtime.atomic_write(Path(path), lambda handle: _disk_full())
        real_write_json(path, payload)

    monkeypatch.setattr(runtime, "write_json", full_for_metrics)
    with pytest.raises(OutputError, match=r"metrics\.json"):
        train(config)
    monkeypatch.setattr(runtime, "write_json", real_write_json)
    out = Path(config.output_dir)
    assert not (out / "metrics.json").exists() and _leftovers(out) == []
    assert not (out / LOCK_NAME).exists()
    result = train(config, resume=True)  # the last checkpoint is after the last epoch
    assert (out / "metrics.json").is_file() and result.metrics["map_index_ties"] > 0


# --- notebooks: an unknown profile or parameter stops before anything runs -------------------


def _never_execute(*args) -> None:
    raise AssertionError("a notebook was executed")


def test_notebook_run_with_an_unknown_profile_names_it(tmp_path: Path) -> None:
    from fusnet.experiments.reproduce import reproduce

    with pytest.raises(ConfigError, match=r"unknown profile 'nope'.*smoke"):
        reproduce("nope", ["01"], output_root=tmp_path / "results", execute=_never_execute)
    assert not (tmp_path / "results").exists()


def test_notebook_run_with_an_unknown_parameter_names_it(tmp_path, monkeypatch) -> None:
    from fusnet.experiments import profiles
    from fusnet.experiments.reproduce import reproduce

    smoke = {**profiles.PROFILES["smoke"]}
    smoke["01_main_results"] = {**smoke["01_main_results"], "epochz": 3}
    monkeypatch.setitem(profiles.PROFILES, "smoke", smoke)
    with pytest.raises(ConfigError, match=r"01_main_results\.ipynb has no parameter.*epochz"):
        reproduce("smoke", ["01"], output_root=tmp_path / "results", execute=_never_execute)
    assert not (tmp_path / "results").exists()
