"""The dataset source registry: official URLs, checksums, aliases and manual instructions.

:data:`DOWNLOADS` maps each dataset to its :class:`DatasetSource`; :func:`manual_instructions`
turns one into steps for fetching it by hand; :func:`mirror_url` redirects a URL to a
mirror. Where the checksums come from: the :mod:`fusnet.data.download` docstring.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fusnet.errors import DownloadError

MIRROR_ENV = "FUSNET_DOWNLOAD_MIRROR"
"""Environment variable naming a mirror that replaces the scheme and host of every URL."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset's official download.

    Attributes:
        url: official URL.
        filename: name to save it under (default: the last component of the URL path).
        md5, sha256, size: the published MD5 and SHA-256 hex digests and size in bytes,
            each None when not confirmed.
        extract: whether the file is an archive to extract.
    """

    url: str
    filename: str | None = None
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    extract: bool = False

    @property
    def name(self) -> str:
        """The local file name."""
        return self.filename or PurePosixPath(urllib.parse.urlsplit(self.url).path).name

    @property
    def verified(self) -> bool:
        """Whether the file has a checksum to verify against."""
        return self.md5 is not None or self.sha256 is not None

    def describe(self) -> str:
        """One line naming the URL and its checksums, for instructions."""
        sums = [f"md5 {self.md5}"] if self.md5 else []
        sums += [f"sha256 {self.sha256}"] if self.sha256 else []
        sums += [f"{self.size:,} bytes"] if self.size is not None else []
        extra = f" ({', '.join(sums)})" if sums else " (no published checksum)"
        return f"{self.url} -> {self.name}{extra}"


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset comes from and how it lies under ``root`` once extracted.

    Attributes:
        name, title, homepage: registry name (as in :data:`fusnet.data.DATASETS`), human
            name, official page.
        subdir: folder under ``root`` receiving the files (``""``: ``root``, for archives
            holding their own top folder); ``top``: the one holding the dataset.
        expected: paths under ``root`` that exist once the dataset is in place.
        files: the files to fetch; empty for manual-only datasets, which have ``manual``.
    """

    name: str
    title: str
    homepage: str
    subdir: str
    top: str
    expected: tuple[str, ...]
    files: tuple[RemoteFile, ...] = ()
    manual: str | None = None


_OXFORD = "https://www.robots.ox.ac.uk/~vgg/data"
_DOGS = "http://vision.stanford.edu/aditya86/ImageNetDogs"

_SOURCES = (
    DatasetSource(
        name="cub200", title="Caltech-UCSD Birds-200-2011",
        homepage="https://www.vision.caltech.edu/datasets/cub_200_2011/",
        subdir="", top="CUB_200_2011",
        expected=("CUB_200_2011/images.txt", "CUB_200_2011/train_test_split.txt",
                  "CUB_200_2011/images"),
        files=(
            RemoteFile(
                "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
                filename="CUB_200_2011.tgz", md5="97eceeb196236b17998738112f37df78",
                extract=True,
            ),
        ),
    ),
    DatasetSource(
        name="aircraft", title="FGVC-Aircraft 2013b",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/",
        subdir="", top="fgvc-aircraft-2013b",
        expected=("fgvc-aircraft-2013b/data/images", "fgvc-aircraft-2013b/data/variants.txt"),
        files=(
            RemoteFile(f"{_OXFORD}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                       md5="d4acdd33327262359767eeaa97a4f732", extract=True),
        ),
    ),
    DatasetSource(
        name="food101", title="Food-101",
        homepage="https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",
        subdir="", top="food-101",
        expected=("food-101/meta/classes.txt", "food-101/meta/train.txt", "food-101/images"),
        files=(
            RemoteFile(
                "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",
                md5="85eeb15f3717b99a5da872d97d918f87",
                sha256="d97d15e438b7f4498f96086a4f7e2fa42a32f2712e87d3295441b2b6314053a4",
                size=4996278331, extract=True,
            ),
        ),
    ),
    DatasetSource(
        name="flowers17", title="Oxford 17 Category Flower Dataset",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/flowers/17/",
        subdir="flowers17", top="flowers17",
        expected=("flowers17/jpg/files.txt", "flowers17/datasplits.mat"),
        files=(
            RemoteFile(f"{_OXFORD}/flowers/17/17flowers.tgz",
                       md5="b59a65d8d1a99cd66944d474e1289eab", extract=True),
            RemoteFile(f"{_OXFORD}/flowers/17/datasplits.mat",
                       md5="4828cddfd0d803c5abbdebcb1e148a1e"),
        ),
    ),
    DatasetSource(
        name="flowers102", title="Oxford 102 Category Flower Dataset",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
        subdir="flowers102", top="flowers102",
        expected=("flowers102/jpg", "flowers102/imagelabels.mat", "flowers102/setid.mat"),
        files=(
            RemoteFile(
                f"{_OXFORD}/flowers/102/102flowers.tgz",
                md5="52808999861908f626f3c1f4e79d11fa",
                sha256="2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246",
                size=344862509, extract=True,
            ),
            RemoteFile(
                f"{_OXFORD}/flowers/102/imagelabels.mat",
                md5="e0620be6f572b9609742df49c70aed4d",
                sha256="4903e94206bac23bf772aadf06451916df56b58fc483a62db32a97b82656651d",
                size=502,
            ),
            RemoteFile(
                f"{_OXFORD}/flowers/102/setid.mat",
                md5="a5357ecc9cb78c4bef273ce3793fc85c",
                sha256="46b8678f91fd95d3c8f4feab80d271a6c834a1dd896fe29fd3e6ad9ce5c8dccd",
                size=14989,
            ),
        ),
    ),
    DatasetSource(
        name="stanford_dogs", title="Stanford Dogs",
        homepage="http://vision.stanford.edu/aditya86/ImageNetDogs/",
        subdir="stanford_dogs", top="stanford_dogs",
        expected=("stanford_dogs/Images", "stanford_dogs/train_list.mat",
                  "stanford_dogs/test_list.mat"),
        files=(
            RemoteFile(
                f"{_DOGS}/images.tar",
                sha256="a443fc2f9a851aa1a7b8e4fa4af94b8459fce2c9f5a2f4dd4669cf9673a4ec58",
                size=793579520, extract=True,
            ),
            RemoteFile(
                f"{_DOGS}/lists.tar",
                sha256="34b47cacd9a98b5d150e084f24d29391c084c55272295ec65c85651bc35f4d6c",
                size=481280, extract=True,
            ),
        ),
    ),
    DatasetSource(
        name="nabirds", title="NABirds (Cornell Lab of Ornithology)",
        homepage="https://dl.allaboutbirds.org/nabirds",
        subdir="", top="nabirds",
        expected=tuple(f"nabirds/{p}" for p in (
            "images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt",
            "hierarchy.txt", "images")),
        manual=(
            "NABirds has no direct download: open https://dl.allaboutbirds.org/nabirds, accept "
            "the terms of use, download nabirds.tar.gz and extract it into ROOT "
            "(`tar -xzf nabirds.tar.gz -C ROOT`)."
        ),
    ),
    DatasetSource(
        name="vegfru", title="VegFru",
        homepage="https://github.com/ustc-vim/vegfru",
        subdir="vegfru", top="vegfru",
        expected=tuple(f"vegfru/{p}" for p in (
            "vegfru_list/vegfru_train.txt", "vegfru_list/vegfru_test.txt", "veg200_images",
            "fru92_images")),
        manual=(
            "VegFru has no direct download: follow the 'Download VegFru Dataset' link on "
            "https://github.com/ustc-vim/vegfru (the authors' Baidu Pan share, "
            "http://pan.baidu.com/s/1boSNcV9; see also the project page "
            "http://vim.ustc.edu.cn/?product=vegfru) and extract the image archives and the "
            "list files into ROOT/vegfru."
        ),
    ),
)
DOWNLOADS: dict[str, DatasetSource] = {source.name: source for source in _SOURCES}
"""Dataset name -> its official source. Names match :data:`fusnet.data.DATASETS`."""

_ALIASES = {
    "cub": "cub200",
    "cub_200_2011": "cub200",
    "fgvc_aircraft": "aircraft",
    "food_101": "food101",
    "dogs": "stanford_dogs",
    "oxford_flowers17": "flowers17",
    "oxford_flowers102": "flowers102",
}


def available_downloads() -> list[str]:
    """Names of the datasets that can be fetched unattended (not NABirds, VegFru)."""
    return sorted(name for name, src in DOWNLOADS.items() if src.files)


def _source(name: str) -> DatasetSource:
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in DOWNLOADS:
        raise DownloadError(
            f"no download is known for dataset {name!r}; known: {', '.join(sorted(DOWNLOADS))}"
        )
    return DOWNLOADS[key]


def _layout(src: DatasetSource, root: str) -> str:
    return "\n".join(f"  {root}/{path}" for path in src.expected)


def manual_instructions(name: str, root: Path | str | None = None) -> str:
    """Where to get a dataset by hand and how to lay it out under ``root`` (``ROOT`` when
    None): the source, the files with their checksums, where to put them, the paths that
    must exist afterwards. DownloadError for an unknown ``name``."""
    src = _source(name)
    where = str(root) if root is not None else "ROOT"
    lines = [f"{src.title} ({src.homepage})"]
    if src.manual is not None:
        lines.append(src.manual.replace("ROOT", where))
    else:
        dest = f"{where}/{src.subdir}" if src.subdir else where
        lines.append("Download these files (on a machine with internet access):")
        lines += [f"  {f.describe()}" for f in src.files]
        lines.append(
            f"and either put them, under these names, into {dest} and run "
            f"`fusnet data download {src.name} --root {where}` again (it verifies the "
            f"checksums and extracts the archives without going online), or extract the "
            f"archives into {dest} yourself."
        )
        lines.append(
            f"Or point ${MIRROR_ENV} at a mirror holding the same paths as the official hosts."
        )
    lines.append("Afterwards these must exist:")
    lines.append(_layout(src, where))
    lines.append(f"Then pass {where}/{src.top} to fusnet as the dataset root.")
    return "\n".join(lines)


def mirror_url(url: str, mirror: str | None) -> str:
    """``mirror`` (e.g. ``"https://mirror.lan/data"``) + the path and query of ``url``;
    ``url`` itself when ``mirror`` is None or empty. DownloadError unless ``mirror`` is an
    absolute URL."""
    if not mirror:
        return url
    base = urllib.parse.urlsplit(mirror)
    if not base.scheme or not base.netloc:
        raise DownloadError(
            f"mirror {mirror!r} is not a URL like http://host[:port][/prefix] "
            f"(from base_url_override or ${MIRROR_ENV})"
        )
    orig = urllib.parse.urlsplit(url)
    path = base.path.rstrip("/") + orig.path
    return urllib.parse.urlunsplit((base.scheme, base.netloc, path, orig.query, ""))
