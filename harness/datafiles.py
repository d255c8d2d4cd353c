"""The datasets' official files: CIFAR-10 (download, md5, the fingerprint runs record),
CIFAR-100 and ImageNet16 pickles, read and validated into uint8 :class:`ImageSet` s.

Every failure names the file and says how to fix it; nothing here knows about splits,
batches or devices (:mod:`harness.data`).
"""

from __future__ import annotations

import hashlib
import pickle
import tarfile
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.errors import UsageError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_SUBDIR = Path("cifar10") / "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = (*CIFAR10_TRAIN_FILES, "test_batch")
IMAGENET16_TRAIN_FILES = tuple(f"train_data_batch_{i}" for i in range(1, 11))


@dataclass
class ImageSet:
    """A labelled image set: uint8 ``[N, 3, H, W]`` pixels and int64 ``[N]`` labels."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> ImageSet:
        """The same set on ``device`` (no copy where it already lives there)."""
        return ImageSet(self.images.to(device), self.labels.to(device), self.num_classes)

    def subset(self, indices: np.ndarray | torch.Tensor) -> ImageSet:
        """The images at ``indices``, in that order."""
        index = torch.as_tensor(indices, dtype=torch.int64, device=self.labels.device)
        return ImageSet(self.images[index], self.labels[index], self.num_classes)

    def downsampled(self, resolution: int) -> ImageSet:
        """The same set at ``resolution`` × ``resolution`` (:func:`downsample`)."""
        return ImageSet(downsample(self.images, resolution), self.labels, self.num_classes)


def downsample(images_u8: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 images box-averaged to ``resolution`` × ``resolution`` and rounded to uint8.

    Done once at load, so every later step (crops, flips, normalisation) works on the
    small images exactly as it does on full-size ones; NB201's ImageNet16-120 is
    ImageNet box-downsampled the same way. ``resolution`` must divide the image size.
    """
    size = images_u8.shape[-1]
    if resolution == size:
        return images_u8
    if resolution <= 0 or size % resolution or images_u8.shape[-2] != size:
        raise ValueError(f"resolution {resolution} must divide the square image size {size}")
    factor = size // resolution
    pooled = F.avg_pool2d(images_u8.to(torch.float32), factor)
    return pooled.round_().clamp_(0, 255).to(torch.uint8)


# ---------------------------------------------------------------- reading pickles


def _read_pickle(path: Path, encoding: str) -> dict[Any, Any]:
    """One official pickle file; any failure to read it names the file."""
    try:
        with path.open("rb") as handle:
            entry = pickle.load(handle, encoding=encoding)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}; re-download or re-extract it") from exc
    if not isinstance(entry, dict):
        raise UsageError(f"{path} is not an official dataset pickle (not a dict)")
    return entry


def _field(entry: dict[Any, Any], name: str, path: Path) -> Any:
    """``entry[name]`` whether the pickle stored its keys as str or bytes."""
    for key in (name, name.encode()):
        if key in entry:
            return entry[key]
    raise UsageError(f"{path} has no {name!r} entry; is it the official format?")


def _read_rows(
    path: Path, label_key: str, side: int, encoding: str
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 ``[n, 3*side*side]`` rows, int64 labels) of one batch file, shape-checked."""
    entry = _read_pickle(path, encoding)
    rows = np.asarray(_field(entry, "data", path))
    labels = np.asarray(_field(entry, label_key, path), dtype=np.int64).reshape(-1)
    width = 3 * side * side
    if rows.ndim != 2 or rows.shape[1] != width or rows.shape[0] != labels.shape[0]:
        raise UsageError(
            f"{path}: expected data of shape [n, {width}] with n labels, "
            f"got {rows.shape} and {labels.shape[0]} labels"
        )
    if rows.dtype != np.uint8:
        raise UsageError(f"{path}: expected uint8 pixels, got {rows.dtype}")
    return rows, labels


def _check_labels(labels: np.ndarray, low: int, high: int, path: Path) -> None:
    if labels.size and (labels.min() < low or labels.max() > high):
        raise UsageError(
            f"{path}: labels outside {low}..{high} (found {labels.min()}..{labels.max()})"
        )


def _to_imageset(
    rows: list[np.ndarray], labels: list[np.ndarray], side: int, classes: int
) -> ImageSet:
    """Stack per-file rows into an :class:`ImageSet` (R, G, B planes → ``[N, 3, H, W]``)."""
    pixels = np.concatenate(rows).reshape(-1, 3, side, side)
    return ImageSet(
        torch.from_numpy(np.ascontiguousarray(pixels)),
        torch.from_numpy(np.concatenate(labels)),
        classes,
    )


def require_files(folder: Path, names: Sequence[str], how: str) -> None:
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise UsageError(f"missing {', '.join(missing)} in {folder}; {how}")


# ---------------------------------------------------------------- CIFAR-10


def cifar10_dir(data_dir: Path) -> Path:
    """Where the CIFAR-10 batch files are expected inside a data directory."""
    return Path(data_dir) / CIFAR10_SUBDIR


def cifar10_help(data_dir: Path) -> str:
    return (
        f"download {CIFAR10_URL} and extract it into {Path(data_dir) / 'cifar10'} "
        "(or load with download=True), or point --data-dir / $HARNESS_DATA at a "
        "directory that holds cifar10/cifar-10-batches-py"
    )


def load_cifar10(data_dir: Path, download: bool = False) -> tuple[ImageSet, ImageSet]:
    """(train 50k in the official order, test 10k) CIFAR-10, validated."""
    folder = cifar10_dir(data_dir)
    if not all((folder / name).is_file() for name in CIFAR10_FILES):
        if not download:
            raise UsageError(f"CIFAR-10 not found at {folder}; {cifar10_help(data_dir)}")
        download_cifar10(Path(data_dir) / "cifar10")
    train = _read_cifar(folder, CIFAR10_TRAIN_FILES, "labels", 10, 50_000)
    test = _read_cifar(folder, ("test_batch",), "labels", 10, 10_000)
    return train, test


def _read_cifar(
    folder: Path, names: Sequence[str], label_key: str, classes: int, expected: int | None
) -> ImageSet:
    """The CIFAR batch files ``names`` as one set; ``expected`` rows unless None."""
    rows, labels = [], []
    for name in names:
        part, part_labels = _read_rows(folder / name, label_key, 32, "bytes")
        _check_labels(part_labels, 0, classes - 1, folder / name)
        rows.append(part)
        labels.append(part_labels)
    total = sum(len(part) for part in labels)
    if expected is not None and total != expected:
        raise UsageError(f"{folder}: {', '.join(names)} hold {total} images, expected {expected}")
    return _to_imageset(rows, labels, 32, classes)


def download_cifar10(dest: Path, url: str | None = None, md5: str | None = None) -> Path:
    """Fetch the official archive, check its md5, extract into ``dest``; return the batch dir."""
    url, md5 = url or CIFAR10_URL, md5 or CIFAR10_MD5
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            archive = Path(tmp) / "cifar-10-python.tar.gz"
            digest = _fetch(url, archive)
            if digest != md5:
                raise UsageError(f"{url} downloaded with md5 {digest}, expected {md5}")
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(dest, filter="data")
    except UsageError:
        raise
    except (OSError, tarfile.TarError) as exc:
        raise UsageError(
            f"could not download CIFAR-10 into {dest} ({exc}); download {url} by hand "
            f"and extract it into {dest}"
        ) from exc
    folder = dest / CIFAR10_SUBDIR.name
    require_files(folder, CIFAR10_FILES, f"the archive from {url} did not contain them")
    return folder


def _fetch(url: str, target: Path) -> str:
    """Stream ``url`` into ``target``; return the md5 of what was written."""
    md5 = hashlib.md5()
    with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as out:
        while chunk := response.read(1 << 20):
            md5.update(chunk)
            out.write(chunk)
    return md5.hexdigest()


def cifar10_fingerprint(data_dir: Path) -> str:
    """sha256 over the CIFAR-10 batch files (name and bytes, fixed order).

    Runs record it so a result names the exact pixels it was searched on (the
    shared copy went through JPEG once; the official download did not).
    Cached per process, keyed on the files' sizes and modification times.
    """
    folder = cifar10_dir(data_dir).resolve()
    require_files(folder, CIFAR10_FILES, cifar10_help(data_dir))
    stats = tuple(
        (s.st_size, s.st_mtime_ns) for s in (folder.joinpath(n).stat() for n in CIFAR10_FILES)
    )
    return _hash_files(str(folder), stats)


@lru_cache(maxsize=8)
def _hash_files(folder: str, stats: tuple[tuple[int, int], ...]) -> str:
    del stats  # part of the cache key only
    digest = hashlib.sha256()
    for name in CIFAR10_FILES:
        digest.update(name.encode())
        with (Path(folder) / name).open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- CIFAR-100, ImageNet16


def load_cifar100(root: Path) -> tuple[ImageSet, ImageSet]:
    """(train, test) CIFAR-100 with fine labels, from ``root/cifar-100-python``.

    Sizes are not enforced (the official files hold 50k / 10k) so subsets load.
    """
    folder = Path(root) / "cifar-100-python"
    how = "download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and extract it there"
    require_files(folder, ("train", "test"), how)
    train = _read_cifar(folder, ("train",), "fine_labels", 100, None)
    test = _read_cifar(folder, ("test",), "fine_labels", 100, None)
    return train, test


def load_imagenet16(root: Path, num_classes: int = 120) -> tuple[ImageSet, ImageSet]:
    """(train, val) of ImageNet16-``num_classes`` from the official 16×16 pickles in ``root``.

    The files label 1..1000; the NB201 variants keep labels ≤ ``num_classes`` and
    shift them to 0-based (ImageNet16-120: 151,700 train / 6,000 val images).
    Filtering happens per file, so the full 1.28M-image set is never held at once.
    """
    if not 1 <= num_classes <= 1000:
        raise UsageError(f"ImageNet16 num_classes must be in 1..1000, got {num_classes}")
    root = Path(root)
    how = "download the 16x16 'Downsampled ImageNet' pickles (image-net.org) into that folder"
    require_files(root, (*IMAGENET16_TRAIN_FILES, "val_data"), how)
    train = _read_imagenet16(root, IMAGENET16_TRAIN_FILES, num_classes)
    val = _read_imagenet16(root, ("val_data",), num_classes)
    return train, val


def _read_imagenet16(root: Path, names: Sequence[str], num_classes: int) -> ImageSet:
    rows, labels = [], []
    for name in names:
        part, part_labels = _read_rows(root / name, "labels", 16, "latin1")
        _check_labels(part_labels, 1, 1000, root / name)
        keep = part_labels <= num_classes
        rows.append(part[keep])
        labels.append(part_labels[keep] - 1)
    return _to_imageset(rows, labels, 16, num_classes)
