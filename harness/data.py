"""The NB201 splits, device-resident loaders and batched augmentation; the search data.

Why this shape: a search step must not wait on Python. Every dataset is read once
(:mod:`harness.datafiles`) into one uint8 tensor, moved to the device once, and each
batch is cut, cropped, flipped and normalised there by a handful of batched tensor ops.
The randomness of an epoch is a pure function of (seed, epoch), so a run resumed at an
epoch boundary sees exactly the batches it would have seen.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.datafiles import (  # noqa: F401 - the formats' names, still read as data.<name>
    CIFAR10_FILES,
    CIFAR10_URL,
    IMAGENET16_TRAIN_FILES,
    ImageSet,
    cifar10_dir,
    cifar10_fingerprint,
    cifar10_help,
    download_cifar10,
    downsample,
    load_cifar10,
    load_cifar100,
    load_imagenet16,
    require_files,
)
from harness.errors import UsageError

# NB201 / AutoDL normalisation constants (mean and std of the pixels, in [0, 1]).
CIFAR10_MEAN = tuple(v / 255 for v in (125.3, 123.0, 113.9))
CIFAR10_STD = tuple(v / 255 for v in (63.0, 62.1, 66.7))


SPLITS_SUBDIR = Path("nb201") / "splits"

# name -> (its two keys, indices per key, size of the set it indexes)
KNOWN_SPLITS: dict[str, tuple[tuple[str, str], int, int]] = {
    "cifar10_valid_split": (("train", "valid"), 25_000, 50_000),
    "cifar100_test_split": (("xvalid", "xtest"), 5_000, 10_000),
    "imagenet16_test_split": (("xvalid", "xtest"), 3_000, 6_000),
}


def crop_padding(resolution: int) -> int:
    """NB201's 4-pixel crop padding at 32 × 32, scaled with the image (2 at 16 × 16)."""
    return max(1, round(4 * resolution / 32))


# ---------------------------------------------------------------- NB201 splits


def check_search_files(data_dir: Path, split_name: str = "cifar10_valid_split") -> None:
    """Fail before a sweep writes anything when the search data is not there.

    Only presence is checked here (cheap, in the main process); contents are
    validated when each run loads them.
    """
    folder = cifar10_dir(data_dir)
    require_files(folder, CIFAR10_FILES, cifar10_help(data_dir))
    split = Path(data_dir) / SPLITS_SUBDIR / f"{split_name}.json"
    if not split.is_file():
        raise UsageError(f"split file {split} not found; check --data-dir (it needs nb201/splits/)")


def load_split(data_dir: Path, name: str = "cifar10_valid_split") -> dict[str, np.ndarray]:
    """An official NB201 index split (``nb201/splits/<name>.json``) as int64 arrays.

    Checked: integer 1-D lists, no repeats, pairwise disjoint, and for the known
    splits the expected keys, sizes and index range.
    """
    path = Path(data_dir) / SPLITS_SUBDIR / f"{name}.json"
    if not path.is_file():
        known = ", ".join(KNOWN_SPLITS)
        raise UsageError(f"split file {path} not found (known splits: {known}); check --data-dir")
    try:
        raw = json.loads(path.read_text())
        split = {key: np.asarray(value, dtype=np.int64) for key, value in raw.items()}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise UsageError(
            f"{path} is not a split file (a JSON object of index lists): {exc}"
        ) from exc
    _check_split(split, name, path)
    return split


def _check_split(split: dict[str, np.ndarray], name: str, path: Path) -> None:
    for key, indices in split.items():
        if indices.ndim != 1 or len(np.unique(indices)) != len(indices) or (indices < 0).any():
            raise UsageError(f"{path}: {key!r} must be distinct non-negative indices")
    keys = list(split)
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            if np.intersect1d(split[first], split[second]).size:
                raise UsageError(f"{path}: {first!r} and {second!r} overlap")
    if name in KNOWN_SPLITS:
        names, size, limit = KNOWN_SPLITS[name]
        for key in names:
            indices = split.get(key)
            if indices is None or len(indices) != size or (indices >= limit).any():
                raise UsageError(f"{path}: {key!r} must hold {size} indices below {limit}")


# ---------------------------------------------------------------- tensor ops


def normalize(
    images_u8: torch.Tensor,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(x/255 - mean) / std`` per channel, as one fused multiply-add.

    Computed in at least float32, then cast, so bf16/fp16 only round the result.
    """
    work = torch.promote_types(dtype, torch.float32)
    scale, neg_shift = _affine(tuple(mean), tuple(std), work, images_u8.device)
    return torch.addcmul(neg_shift, images_u8.to(work), scale).to(dtype)


@lru_cache(maxsize=32)
def _affine(
    mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1/(255·std), -mean/std) as ``[1, C, 1, 1]`` tensors, built once per device.

    Cached so a loop does not copy two tiny tensors host-to-device every batch.
    """
    std_t = torch.tensor(std, dtype=dtype, device=device).view(1, -1, 1, 1)
    mean_t = torch.tensor(mean, dtype=dtype, device=device).view(1, -1, 1, 1)
    return 1.0 / (255.0 * std_t), -mean_t / std_t


def crop_flip(
    images_u8: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    flip: torch.Tensor,
    pad: int,
) -> torch.Tensor:
    """Per image: window at (``top``, ``left``) of the zero-padded image, mirrored where ``flip``.

    One pad and one ``gather`` for the whole batch: the flip is folded into the
    column indices and each image's window is one flat index map shared by its
    channels. On a 2-core CPU that measured about 6x faster than 4-way advanced
    indexing or a channels-last gather of whole pixels.
    """
    n, channels, height, width = images_u8.shape
    device = images_u8.device
    padded = F.pad(images_u8, (pad, pad, pad, pad))
    padded_width = width + 2 * pad
    rows = top.view(n, 1) + torch.arange(height, device=device)
    cols_fwd = torch.arange(width, device=device)
    cols = left.view(n, 1) + torch.where(flip.view(n, 1), width - 1 - cols_fwd, cols_fwd)
    flat = (rows.view(n, height, 1) * padded_width + cols.view(n, 1, width)).view(n, 1, -1)
    windows = padded.flatten(2).gather(2, flat.expand(n, channels, height * width))
    return windows.view(n, channels, height, width)


class CropSource:
    """Random crops + flips of a fixed uint8 image set without per-batch padding or gathers.

    Built once per loader: every image zero-padded and stored twice, as is and
    mirrored (``[N, 2, C, H+2p, W+2p]``, about 3x the set's bytes). A crop row is then
    ``W`` consecutive bytes of that storage, so a whole batch is one ``index_select``
    of ``N·C·H`` rows from an overlapping strided view: no pad, no batch copy, and an
    index 32x smaller than a per-pixel ``gather``. Equal, bit for bit, to
    ``crop_flip(images[index], top, left, flip, pad)`` (a mirrored window at ``left``
    is the mirrored image's window at ``2·pad − left``).
    """

    def __init__(self, images_u8: torch.Tensor, pad: int) -> None:
        n, channels, height, width = images_u8.shape
        padded = F.pad(images_u8, (pad, pad, pad, pad))
        self.storage = torch.stack((padded, padded.flip(-1)), 1).contiguous()
        self.pad, self.width = pad, width
        self.strides = self.storage.stride()  # image, mirror, channel, row, column
        flat = self.storage.view(-1)
        self.rows = flat.as_strided((flat.numel() - width + 1, width), (1, 1))
        device = images_u8.device
        row_start = torch.arange(channels, device=device).view(channels, 1) * self.strides[2]
        self.row_offsets = row_start + torch.arange(height, device=device) * self.strides[3]

    def crops(
        self, index: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor
    ) -> torch.Tensor:
        """``[B, C, H, W]`` windows of images ``index`` at (``top``, ``left``), mirrored
        where ``flip``."""
        s_image, s_mirror, _, s_row, _ = self.strides
        left = torch.where(flip, 2 * self.pad - left, left)
        start = index * s_image + flip.long() * s_mirror + top * s_row + left
        offsets = start.view(-1, 1, 1) + self.row_offsets
        channels, height = self.row_offsets.shape
        windows = self.rows.index_select(0, offsets.view(-1))
        return windows.view(index.shape[0], channels, height, self.width)


def draw_augmentation(
    n: int, generator: torch.Generator, pad: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top, left, flip) for ``n`` images, in the order every augmentation path draws them."""
    top = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    return top, left, flip


def augment_batch(
    images_u8: torch.Tensor, generator: torch.Generator, pad: int = 4
) -> torch.Tensor:
    """Random crop (zero padding ``pad``) + random horizontal flip, as in NB201's train transform.

    Offsets are uniform on 0..2·pad like torchvision's RandomCrop(padding=pad);
    flips have probability 1/2. ``generator`` must live on the images' device.
    """
    top, left, flip = draw_augmentation(images_u8.shape[0], generator, pad, images_u8.device)
    return crop_flip(images_u8, top, left, flip, pad)


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys (e.g. run seed, stream, epoch)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


# ---------------------------------------------------------------- loaders


class TensorLoader:
    """Shuffled, optionally augmented, normalised batches of a device-resident uint8 set.

    Epoch ``e`` draws its permutation and augmentation from a generator seeded by
    ``derive_seed(seed, e)`` on the data's device, so any epoch can be replayed
    exactly (same device, same torch version) without replaying the ones before.
    """

    def __init__(
        self,
        images_u8: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        augment: bool,
        seed: int,
        drop_last: bool = True,
        dtype: torch.dtype = torch.float32,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        pad: int = 4,
    ) -> None:
        _check_loader_inputs(images_u8, labels, batch_size)
        self.images, self.labels = images_u8, labels
        self.batch_size, self.augment, self.seed = batch_size, augment, seed
        self.drop_last, self.dtype, self.pad = drop_last, dtype, pad
        self.mean, self.std = tuple(mean), tuple(std)
        self.crop_source = CropSource(images_u8, pad) if augment else None
        if self.batches_per_epoch == 0:
            raise UsageError(
                f"{len(labels)} images make no full batch of {batch_size}; "
                "use more data, a smaller batch, or drop_last=False"
            )

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def batches_per_epoch(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def epoch_generator(self, epoch: int) -> torch.Generator:
        """The generator that fixes epoch ``epoch``'s order and augmentation."""
        generator = torch.Generator(device=self.images.device)
        generator.manual_seed(derive_seed(self.seed, epoch))
        return generator

    def epoch_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(normalised float images, int64 labels) for every batch of epoch ``epoch``."""
        generator = self.epoch_generator(epoch)
        order = torch.randperm(self.num_samples, generator=generator, device=self.images.device)
        for start in range(0, self.batches_per_epoch * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            if self.crop_source is not None:
                top, left, flip = draw_augmentation(len(index), generator, self.pad, index.device)
                images = self.crop_source.crops(index, top, left, flip)
            else:
                images = self.images[index]
            yield normalize(images, self.mean, self.std, self.dtype), self.labels[index]


def _check_loader_inputs(images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(
            f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
        )
    if labels.shape != (images.shape[0],) or images.device != labels.device:
        raise ValueError("labels must be [N] and on the images' device")
    if batch_size < 1:
        raise UsageError(f"batch size must be positive, got {batch_size}")


# ---------------------------------------------------------------- the search data


@dataclass
class SearchData:
    """Everything a CIFAR-10 search reads: two loaders and a fixed evaluation batch.

    ``train`` feeds the weight step, ``valid`` the architecture step (both
    augmented, as NB201 applies train transforms to both halves); ``eval_*`` is
    the same un-augmented slice of the valid split for every seed, so the
    discretization gap is measured on identical images across runs.
    """

    train: TensorLoader
    valid: TensorLoader
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    split_name: str
    fingerprint: str
    num_classes: int = 10
    train_fraction: float | None = None  # a method's own split of the pooled images
    eval_in_train: int = 0  # gap-eval images the weights also train on (such a split only)

    def info(self) -> dict[str, Any]:
        """What a run records about its data."""
        return {
            "dataset": "cifar10",
            "split": self.split_name,
            "train_size": self.train.num_samples,
            "valid_size": self.valid.num_samples,
            "eval_size": int(self.eval_labels.shape[0]),
            "batch_size": self.train.batch_size,
            "train_batches_per_epoch": self.train.batches_per_epoch,
            "valid_batches_per_epoch": self.valid.batches_per_epoch,
            "normalization": {"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)},
            "resolution": int(self.eval_images.shape[-1]),
            "crop_padding": self.train.pad,
            "train_fraction": self.train_fraction,
            "eval_in_train": self.eval_in_train,
            "cifar10_sha256": self.fingerprint,
            "device": str(self.train.images.device),
        }


def _take(indices: np.ndarray, size: int, what: str) -> np.ndarray:
    """The first ``size`` of ``indices`` (0 = all); asking for more is a usage error."""
    if size < 0 or size > len(indices):
        raise UsageError(f"{what} must be in 0..{len(indices)} (0 = all), got {size}")
    return indices[: size or len(indices)]


def pooled_split(
    train_idx: np.ndarray, valid_idx: np.ndarray, fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Both halves pooled, the weights' share ``fraction`` of them (floored, as DARTS-PRIME's
    ``train_portion``); the α share is the front of the valid half, where the
    gap-eval images also come from, so they stay out of training where they fit."""
    total = len(train_idx) + len(valid_idx)
    n_valid = total - math.floor(fraction * total)
    if not 0 < n_valid <= len(valid_idx):
        raise UsageError(
            f"a train fraction of {fraction:.4g} leaves {n_valid} of {total} images for α; "
            f"it must leave between 1 and the valid half's {len(valid_idx)}"
        )
    return np.concatenate([train_idx, valid_idx[n_valid:]]), valid_idx[:n_valid]


HALVES_SPLIT = "cifar10_halves"
"""The lineage-2 search split (DrNAS, SmoothDARTS, β-DARTS, darts-pt NB201 code): the
first and the last 25k images of the CIFAR-10 training set, in file order."""


def halves_split() -> dict[str, np.ndarray]:
    """:data:`HALVES_SPLIT`'s indices: ``indices[:25000]`` trains w, ``indices[25000:]`` α."""
    indices = np.arange(2 * KNOWN_SPLITS["cifar10_valid_split"][1], dtype=np.int64)
    half = len(indices) // 2
    return {"train": indices[:half], "valid": indices[half:]}


def split_file_name(split: str) -> str:
    """The data split a config's ``split`` names: NB201's file, or the halves."""
    return HALVES_SPLIT if split == "halves" else "cifar10_valid_split"


def build_search_data(
    data_dir: Path,
    device: torch.device | str,
    batch_size: int,
    train_size: int,
    valid_size: int,
    eval_size: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
    split_name: str = "cifar10_valid_split",
    train_fraction: float | None = None,
    resolution: int = 32,
) -> SearchData:
    """CIFAR-10 search data on ``device`` from the official NB201 train/valid split
    (``split_name``; :data:`HALVES_SPLIT` for the first / last 25k images instead).

    Only the selected images move to the device, once, as uint8. The train and
    valid loaders draw from independent streams derived from ``seed``. With
    ``train_fraction`` the selected images of both halves are re-split
    (:func:`pooled_split`). ``resolution`` downsamples the selected images once
    (:func:`downsample`) and scales the crop padding with them.
    """
    train_set, _ = load_cifar10(data_dir)
    split = halves_split() if split_name == HALVES_SPLIT else load_split(data_dir, split_name)
    train_idx = _take(split["train"], train_size, "train_size")
    valid_idx = _take(split["valid"], valid_size, "valid_size")
    eval_idx = _take(split["valid"], eval_size, "eval_size")
    if train_fraction is not None:
        train_idx, valid_idx = pooled_split(train_idx, valid_idx, train_fraction)
    search_train = train_set.subset(train_idx).downsampled(resolution).to(device)
    search_valid = train_set.subset(valid_idx).downsampled(resolution).to(device)
    evaluation = train_set.subset(eval_idx).downsampled(resolution).to(device)
    pad = crop_padding(resolution)
    return SearchData(
        train=TensorLoader(
            search_train.images,
            search_train.labels,
            batch_size,
            True,
            derive_seed(seed, 0),
            dtype=dtype,
            pad=pad,
        ),
        valid=TensorLoader(
            search_valid.images,
            search_valid.labels,
            batch_size,
            True,
            derive_seed(seed, 1),
            dtype=dtype,
            pad=pad,
        ),
        eval_images=normalize(evaluation.images, CIFAR10_MEAN, CIFAR10_STD, dtype),
        eval_labels=evaluation.labels,
        split_name=split_name,
        fingerprint=cifar10_fingerprint(data_dir),
        train_fraction=train_fraction,
        eval_in_train=int(np.isin(eval_idx, train_idx).sum()) if train_fraction else 0,
    )
