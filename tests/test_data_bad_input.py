"""Bad input is caught before training, and every message names the file and the fix.

The trees are small copies of the real CUB subset made in tmp_path; /work/shared is
never modified.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from fusnet.data import build_dataset
from fusnet.errors import ConfigError, DataError

N_CLASSES, N_TRAIN, N_TEST = 3, 3, 2  # per class


@pytest.fixture
def cub_copy(tmp_path: Path, cub100_root: Path) -> Path:
    """A 3-class CUB-200-2011 tree (3 train + 2 test a class) copied from the real subset."""
    src = cub100_root / "CUB_200_2011"
    dst = tmp_path / "CUB_200_2011"
    class_lines = (src / "classes.txt").read_text().splitlines()[:N_CLASSES]
    images, labels, split = [], [], []
    image_id = 0
    for line in class_lines:
        cid, folder = line.split()
        files = sorted((src / "images" / folder).iterdir())[: N_TRAIN + N_TEST]
        for k, f in enumerate(files):
            image_id += 1
            (dst / "images" / folder).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst / "images" / folder / f.name)
            images.append(f"{image_id} {folder}/{f.name}")
            labels.append(f"{image_id} {cid}")
            split.append(f"{image_id} {int(k < N_TRAIN)}")
    for name, lines in (
        ("classes.txt", class_lines),
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", split),
    ):
        (dst / name).write_text("\n".join(lines) + "\n")
    return tmp_path


def _first_image(root: Path) -> Path:
    rel = (root / "CUB_200_2011" / "images.txt").read_text().split()[1]
    return root / "CUB_200_2011" / "images" / rel


def test_the_copy_loads(cub_copy: Path) -> None:
    assert len(build_dataset("cub200", cub_copy, "train")) == N_CLASSES * N_TRAIN
    assert len(build_dataset("cub200", cub_copy, "test")) == N_CLASSES * N_TEST


@pytest.mark.parametrize(
    "name", ["train_test_split.txt", "images.txt", "image_class_labels.txt", "classes.txt"]
)
def test_missing_list_file_names_it_and_the_download_command(cub_copy: Path, name: str) -> None:
    path = cub_copy / "CUB_200_2011" / name
    path.unlink()
    with pytest.raises(DataError) as err:
        build_dataset("cub200", cub_copy, "train")
    assert str(path) in str(err.value)
    assert "fusnet data download cub200 --root" in str(err.value)


def test_wrong_root_says_where_the_files_should_be(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"CUB_200_2011/images\.txt.*fusnet data download"):
        build_dataset("cub200", tmp_path, "train")
    with pytest.raises(DataError, match="does not exist"):
        build_dataset("cub200", tmp_path / "nowhere", "train")
    with pytest.raises(DataError, match="root=None"):
        build_dataset("cub200", None, "train")


def test_corrupt_image_is_named(cub_copy: Path) -> None:
    bad = _first_image(cub_copy)
    bad.write_bytes(b"this is not a JPEG at all" * 10)
    with pytest.raises(DataError, match=r"1 bad image.*" + bad.name) as err:
        build_dataset("cub200", cub_copy, "train")
    assert str(bad) in str(err.value) and "skip_bad_images=True" in str(err.value)


def test_skip_bad_images_warns_and_drops(cub_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = _first_image(cub_copy)
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage")
    with caplog.at_level(logging.WARNING, logger="fusnet.data"):
        ds = build_dataset("cub200", cub_copy, "train", skip_bad_images=True)
    assert len(ds) == N_CLASSES * N_TRAIN - 1 == len(ds.labels)
    assert bad not in {p for p, _ in ds.samples}
    assert str(bad) in caplog.text
    ds[0]  # the remaining images load


def test_missing_image_is_named_and_can_be_skipped(cub_copy: Path) -> None:
    gone = _first_image(cub_copy)
    gone.unlink()
    with pytest.raises(DataError, match="missing") as err:
        build_dataset("cub200", cub_copy, "train")
    assert str(gone) in str(err.value)
    ds = build_dataset("cub200", cub_copy, "train", skip_bad_images=True)
    assert len(ds) == N_CLASSES * N_TRAIN - 1


def test_unverified_bad_image_fails_on_loading_with_its_name(cub_copy: Path) -> None:
    gone = _first_image(cub_copy)
    gone.unlink()
    ds = build_dataset("cub200", cub_copy, "train", verify=False)
    with pytest.raises(DataError, match="missing") as err:
        ds[0]
    assert str(gone) in str(err.value)


def test_truncated_jpeg_fails_on_decode(cub_copy: Path) -> None:
    bad = _first_image(cub_copy)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    ds = build_dataset("cub200", cub_copy, "train", verify=False)
    with pytest.raises(DataError, match="cannot decode") as err:
        ds[0]
    assert str(bad) in str(err.value)
    with pytest.raises(DataError, match=bad.name):
        build_dataset("cub200", cub_copy, "train", decode=True)


def test_label_outside_the_class_list(cub_copy: Path) -> None:
    labels = cub_copy / "CUB_200_2011" / "image_class_labels.txt"
    lines = labels.read_text().splitlines()
    lines[0] = "1 999"
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="class 999") as err:
        build_dataset("cub200", cub_copy, "train")
    assert str(labels) in str(err.value)


def test_csv_label_out_of_range_names_the_csv(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("path,label\na.jpg,0\nb.jpg,5\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(DataError, match=r"train\.csv: label 5 .* outside 0\.\.1"):
        build_dataset("csv", tmp_path, "train", verify=False)


def test_empty_class_in_train_is_an_error_and_in_test_a_warning(
    cub_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    split_file = cub_copy / "CUB_200_2011" / "train_test_split.txt"
    lines = split_file.read_text().splitlines()
    per_class = N_TRAIN + N_TEST
    last = range((N_CLASSES - 1) * per_class, N_CLASSES * per_class)
    for i in last:  # the last class: every image becomes a training image
        lines[i] = lines[i].split()[0] + " 1"
    split_file.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="fusnet.data"):
        test = build_dataset("cub200", cub_copy, "test")
    assert len(test) == (N_CLASSES - 1) * N_TEST and "no image in split 'test'" in caplog.text
    for i in last:  # ... and now every one a test image
        lines[i] = lines[i].split()[0] + " 0"
    split_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="no image in split 'train'") as err:
        build_dataset("cub200", cub_copy, "train")
    assert str(split_file) in str(err.value)


def test_dropping_the_last_image_of_a_class_is_an_error(cub_copy: Path) -> None:
    root = cub_copy / "CUB_200_2011"
    folder = (root / "classes.txt").read_text().split()[1]
    for k, f in enumerate(sorted((root / "images" / folder).iterdir())):
        if k < N_TRAIN:
            f.write_bytes(b"broken")
    with pytest.raises(DataError, match="no image in split 'train'"):
        build_dataset("cub200", cub_copy, "train", skip_bad_images=True)


def test_damaged_list_line_names_file_and_line(cub_copy: Path) -> None:
    images = cub_copy / "CUB_200_2011" / "images.txt"
    images.write_text(images.read_text() + "42\n")
    with pytest.raises(DataError, match=r"images\.txt line 16 has 1 field"):
        build_dataset("cub200", cub_copy, "train")


def test_unknown_dataset_split_and_option_are_config_errors(cub_copy: Path) -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'cub'"):
        build_dataset("cub", cub_copy, "train")
    with pytest.raises(ConfigError, match="unknown split 'trainval'"):
        build_dataset("cub200", cub_copy, "trainval")
    with pytest.raises(ConfigError, match="no option"):
        build_dataset("cub200", cub_copy, "train", num_classes=3)
