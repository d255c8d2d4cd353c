"""Data: official formats read back exactly, NB201 splits, augmentation, loader determinism."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness import data
from harness.errors import UsageError

# ---------------------------------------------------------------- real CIFAR-10 and splits


@pytest.fixture(scope="module")
def cifar10(data_dir: Path) -> tuple[data.ImageSet, data.ImageSet]:
    return data.load_cifar10(data_dir)


def _raw_batch(path: Path) -> dict:
    with path.open("rb") as handle:
        return pickle.load(handle, encoding="bytes")


def test_cifar10_shapes_and_labels(cifar10: tuple[data.ImageSet, data.ImageSet]) -> None:
    train, test = cifar10
    assert train.images.shape == (50_000, 3, 32, 32) and test.images.shape == (10_000, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.num_classes == test.num_classes == 10
    for part in (train, test):
        assert int(part.labels.min()) == 0 and int(part.labels.max()) == 9
    assert torch.equal(test.labels.bincount(), torch.full((10,), 1000))


def test_cifar10_keeps_official_order(
    data_dir: Path, cifar10: tuple[data.ImageSet, data.ImageSet]
) -> None:
    train, _ = cifar10
    folder = data.cifar10_dir(data_dir)
    first, last = _raw_batch(folder / "data_batch_1"), _raw_batch(folder / "data_batch_5")
    assert torch.equal(train.images[0], torch.from_numpy(first[b"data"][0].reshape(3, 32, 32)))
    assert torch.equal(train.images[-1], torch.from_numpy(last[b"data"][-1].reshape(3, 32, 32)))
    assert train.labels[:10000].tolist() == list(first[b"labels"])
    assert train.labels[-10000:].tolist() == list(last[b"labels"])


def test_cifar10_fingerprint_is_stable_and_content_sensitive(tmp_path: Path) -> None:
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in data.CIFAR10_FILES:
        (folder / name).write_bytes(name.encode())
    first = data.cifar10_fingerprint(tmp_path)
    assert len(first) == 64 and first == data.cifar10_fingerprint(tmp_path)
    (folder / "test_batch").write_bytes(b"changed pixels")
    assert data.cifar10_fingerprint(tmp_path) != first


def test_official_split(data_dir: Path) -> None:
    split = data.load_split(data_dir)
    train, valid = split["train"], split["valid"]
    assert len(train) == len(valid) == 25_000
    assert np.intersect1d(train, valid).size == 0
    assert np.array_equal(np.union1d(train, valid), np.arange(50_000))
    for name in ("cifar100_test_split", "imagenet16_test_split"):
        halves = data.load_split(data_dir, name)
        assert np.intersect1d(halves["xvalid"], halves["xtest"]).size == 0


def test_overlapping_split_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "nb201" / "splits"
    folder.mkdir(parents=True)
    (folder / "mine.json").write_text('{"a": [0, 1, 2], "b": [2, 3]}')
    with pytest.raises(UsageError, match="overlap"):
        data.load_split(tmp_path, "mine")


# ---------------------------------------------------------------- missing data


def test_missing_cifar10_names_the_expected_path(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        data.load_cifar10(tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "cifar10" / "cifar-10-batches-py") in message
    assert data.CIFAR10_URL in message


def test_missing_split_and_other_sets_name_their_paths(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=str(tmp_path / "nb201" / "splits")):
        data.load_split(tmp_path)
    with pytest.raises(UsageError, match=str(tmp_path / "cifar-100-python")):
        data.load_cifar100(tmp_path)
    with pytest.raises(UsageError, match="train_data_batch_1"):
        data.load_imagenet16(tmp_path)


def test_failed_download_is_a_usage_error(tmp_path: Path) -> None:
    bad_url = (tmp_path / "no-such-archive.tar.gz").as_uri()
    with pytest.raises(UsageError, match="could not download"):
        data.download_cifar10(tmp_path / "cifar10", url=bad_url)


def test_download_checks_md5_and_extracts(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in data.CIFAR10_FILES:
            member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            member.size = len(name)
            tar.addfile(member, io.BytesIO(name.encode()))
    archive = tmp_path / "archive.tar.gz"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(UsageError, match="md5"):
        data.download_cifar10(tmp_path / "a", url=archive.as_uri(), md5="0" * 32)
    good = hashlib.md5(buffer.getvalue()).hexdigest()
    folder = data.download_cifar10(tmp_path / "b", url=archive.as_uri(), md5=good)
    assert (folder / "test_batch").read_bytes() == b"test_batch"


def test_corrupt_cifar10_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows = np.zeros((2, 3072), np.uint8)
    for name in data.CIFAR10_FILES:
        labels = [0, 12] if name == "data_batch_3" else [0, 1]
        with (folder / name).open("wb") as handle:
            pickle.dump({b"data": rows, b"labels": labels}, handle)
    with pytest.raises(UsageError, match="data_batch_3"):
        data.load_cifar10(tmp_path)


# ---------------------------------------------------------------- synthetic official formats


def _random_rows(rng: np.random.Generator, n: int, side: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3 * side * side), dtype=np.uint8)


def test_cifar100_reads_back_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    written = {}
    for name, n in (("train", 7), ("test", 3)):
        rows, fine = _random_rows(rng, n, 32), rng.integers(0, 100, n).tolist()
        entry = {b"filenames": [b"x"] * n, b"fine_labels": fine, b"coarse_labels": [0] * n}
        entry[b"data"] = rows
        with (folder / name).open("wb") as handle:
            pickle.dump(entry, handle, protocol=2)
        written[name] = (rows, fine)
    train, test = data.load_cifar100(tmp_path)
    for part, name in ((train, "train"), (test, "test")):
        rows, fine = written[name]
        assert part.num_classes == 100 and part.labels.tolist() == fine
        assert np.array_equal(part.images.numpy(), rows.reshape(-1, 3, 32, 32))
    # the R plane is the first 1024 values of a row, row-major
    assert int(train.images[0, 0, 0, 1]) == int(written["train"][0][0, 1])
    assert int(train.images[0, 2, 31, 31]) == int(written["train"][0][0, 3071])


def _write_imagenet16(folder: Path, rng: np.random.Generator) -> dict[str, tuple]:
    """Official ImageNet16 pickles (str keys, 1-based labels, mean in train files)."""
    written = {}
    names = [*data.IMAGENET16_TRAIN_FILES, "val_data"]
    for i, name in enumerate(names):
        labels = [1, 120, 121, 1000, 7 + i, 500]
        rows = _random_rows(rng, len(labels), 16)
        entry = {"data": rows, "labels": labels}
        if name != "val_data":
            entry["mean"] = rows.mean(axis=0)
        with (folder / name).open("wb") as handle:
            pickle.dump(entry, handle, protocol=2)
        written[name] = (rows, np.asarray(labels))
    return written


def test_imagenet16_120_filters_and_zero_bases_labels(tmp_path: Path) -> None:
    written = _write_imagenet16(tmp_path, np.random.default_rng(1))
    train, val = data.load_imagenet16(tmp_path, num_classes=120)
    expect_rows, expect_labels = [], []
    for name in data.IMAGENET16_TRAIN_FILES:
        rows, labels = written[name]
        keep = labels <= 120
        expect_rows.append(rows[keep])
        expect_labels.append(labels[keep] - 1)
    assert train.labels.tolist() == np.concatenate(expect_labels).tolist()
    assert train.images.shape == (len(train), 3, 16, 16) and train.num_classes == 120
    assert np.array_equal(train.images.numpy(), np.concatenate(expect_rows).reshape(-1, 3, 16, 16))
    assert train.labels[:2].tolist() == [0, 119]  # labels 1 and 120 kept, 121 and 1000 dropped
    rows, _ = written["val_data"]
    assert val.labels.tolist() == [0, 119, 6 + 10]
    assert np.array_equal(val.images.numpy(), rows[[0, 1, 4]].reshape(-1, 3, 16, 16))
    full, _ = data.load_imagenet16(tmp_path, num_classes=1000)
    assert len(full) == 60 and int(full.labels.max()) == 999


# ---------------------------------------------------------------- augmentation


def _find_window(out: torch.Tensor, padded: torch.Tensor, pad: int) -> tuple[int, int, bool]:
    """The (top, left, flipped) window of ``padded`` that equals ``out``, by explicit search."""
    size = out.shape[-1]
    hits = [
        (top, left, flipped)
        for top in range(2 * pad + 1)
        for left in range(2 * pad + 1)
        for flipped in (False, True)
        if torch.equal(
            out,
            padded[:, top : top + size, left : left + size].flip(-1)
            if flipped
            else padded[:, top : top + size, left : left + size],
        )
    ]
    assert len(hits) == 1, f"output matches {len(hits)} windows, expected exactly one"
    return hits[0]


def test_augment_is_a_padded_window_flipped_or_not() -> None:
    images = torch.randint(1, 256, (96, 3, 32, 32), dtype=torch.uint8)  # no zeros: padding shows
    out = data.augment_batch(images, torch.Generator().manual_seed(3))
    assert out.shape == images.shape and out.dtype == torch.uint8
    found = [
        _find_window(o, F.pad(img, (4, 4, 4, 4)), 4) for o, img in zip(out, images, strict=True)
    ]
    flips = sum(flipped for _, _, flipped in found)
    assert 0.3 * len(found) < flips < 0.7 * len(found)
    assert {top for top, _, _ in found} == set(range(9))
    assert {left for _, left, _ in found} == set(range(9))
    again = data.augment_batch(images, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)


def test_crop_flip_matches_explicit_reference() -> None:
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    top, left = torch.tensor([0, 4, 2, 3]), torch.tensor([4, 0, 1, 2])
    flip = torch.tensor([False, True, True, False])
    out = data.crop_flip(images, top, left, flip, pad=2)
    for i in range(4):
        window = F.pad(images[i], (2, 2, 2, 2))[:, top[i] : top[i] + 16, left[i] : left[i] + 16]
        assert torch.equal(out[i], window.flip(-1) if flip[i] else window)


@pytest.mark.parametrize(("pad", "shape"), [(4, (50, 3, 32, 32)), (2, (7, 2, 16, 12))])
def test_crop_source_equals_crop_flip(pad: int, shape: tuple[int, ...]) -> None:
    """The loader's fast crop is bit-identical to padding + gathering the batch."""
    generator = torch.Generator().manual_seed(11)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    source = data.CropSource(images, pad)
    for _ in range(5):
        index = torch.randint(0, shape[0], (16,), generator=generator)
        top, left, flip = data.draw_augmentation(16, generator, pad, images.device)
        fast = source.crops(index, top, left, flip)
        assert torch.equal(fast, data.crop_flip(images[index], top, left, flip, pad))


def test_loader_batches_equal_the_reference_augmentation() -> None:
    """TensorLoader (fast crop) == index, then ``augment_batch``, with the same draws."""
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(40) % 10
    loader = data.TensorLoader(images, labels, 8, True, seed=3, pad=2)
    generator = loader.epoch_generator(1)
    order = torch.randperm(40, generator=generator)
    for start, (batch, batch_labels) in zip(range(0, 40, 8), loader.epoch_batches(1), strict=True):
        index = order[start : start + 8]
        expected = data.normalize(data.augment_batch(images[index], generator, 2))
        assert torch.equal(batch, expected)
        assert torch.equal(batch_labels, labels[index])


def test_normalize_uses_nb201_constants() -> None:
    mean = torch.tensor([125.3, 123.0, 113.9])
    pixel = torch.stack([mean.round(), mean.round() + 63]).to(torch.uint8)
    images = pixel.view(2, 3, 1, 1).expand(2, 3, 2, 2)
    out = data.normalize(images, data.CIFAR10_MEAN, data.CIFAR10_STD)
    expect = (pixel.float() / 255 - torch.tensor(data.CIFAR10_MEAN)) / torch.tensor(
        data.CIFAR10_STD
    )
    assert out.dtype == torch.float32
    assert torch.allclose(out[:, :, 0, 0], expect, atol=1e-6)
    assert out[0].abs().max() < 0.01  # the mean pixel maps to about zero
    assert data.normalize(images, dtype=torch.bfloat16).dtype == torch.bfloat16


# ---------------------------------------------------------------- TensorLoader


def _indexed_set(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose every pixel encodes the label, so labels identify images."""
    labels = torch.arange(n)
    images = (labels % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, 8, 8).contiguous()
    return images, labels


def _epoch(loader: data.TensorLoader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader.epoch_batches(epoch))


def test_loader_is_a_pure_function_of_seed_and_epoch() -> None:
    images = torch.randint(0, 256, (200, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (200,))
    loader = data.TensorLoader(images, labels, 32, augment=True, seed=5)
    first, second = _epoch(loader, 3), _epoch(loader, 3)
    resumed = _epoch(data.TensorLoader(images, labels, 32, augment=True, seed=5), 3)
    assert len(first) == len(loader) == loader.batches_per_epoch == 6
    for (x1, y1), (x2, y2), (x3, y3) in zip(first, second, resumed, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert torch.equal(x1, x3) and torch.equal(y1, y3)
    assert not torch.equal(_epoch(loader, 4)[0][0], first[0][0])
    other_seed = data.TensorLoader(images, labels, 32, augment=True, seed=6)
    assert not torch.equal(_epoch(other_seed, 3)[0][0], first[0][0])


def test_each_epoch_is_a_permutation() -> None:
    images, labels = _indexed_set(70)
    loader = data.TensorLoader(images, labels, 16, augment=False, seed=0, drop_last=False)
    assert len(loader) == 5
    for epoch in (0, 1):
        batches = _epoch(loader, epoch)
        assert [len(y) for _, y in batches] == [16, 16, 16, 16, 6]
        seen = torch.cat([y for _, y in batches])
        assert sorted(seen.tolist()) == list(range(70))
        assert seen.tolist() != list(range(70))  # actually shuffled
        for x, y in batches:  # images travel with their labels, normalised
            expect = data.normalize(images[y])
            assert torch.equal(x, expect)


def test_drop_last_and_too_small_sets() -> None:
    images, labels = _indexed_set(70)
    loader = data.TensorLoader(images, labels, 16, augment=True, seed=0)
    assert len(loader) == 4 and all(len(y) == 16 for _, y in loader.epoch_batches(0))
    with pytest.raises(UsageError, match="no full batch"):
        data.TensorLoader(images[:10], labels[:10], 16, augment=True, seed=0)


# ---------------------------------------------------------------- search data


def test_pooled_split_gives_the_weights_their_share_and_alpha_the_front_of_valid() -> None:
    train, valid = np.arange(0, 600), np.arange(1000, 1500)
    new_train, new_valid = data.pooled_split(train, valid, 10 / 11)
    assert (len(new_train), len(new_valid)) == (1000, 100)  # floor(1100·10/11) = 1000
    assert new_valid.tolist() == list(range(1000, 1100))
    assert sorted(np.concatenate([new_train, new_valid]).tolist()) == sorted(
        np.concatenate([train, valid]).tolist()
    )
    with pytest.raises(UsageError, match="train fraction"):
        data.pooled_split(train, valid, 0.3)  # would need train images for α


def test_build_search_data(data_dir: Path, cifar10: tuple[data.ImageSet, data.ImageSet]) -> None:
    kwargs = dict(batch_size=64, train_size=640, valid_size=320, eval_size=100)
    built = data.build_search_data(data_dir, "cpu", seed=0, **kwargs)
    split = data.load_split(data_dir)
    train, _ = cifar10
    assert len(built.train) == 10 and len(built.valid) == 5
    assert torch.equal(built.train.images, train.images[split["train"][:640]])
    assert torch.equal(built.valid.labels, train.labels[split["valid"][:320]])
    assert torch.equal(built.eval_images, data.normalize(train.images[split["valid"][:100]]))
    assert torch.equal(built.eval_labels, train.labels[split["valid"][:100]])
    info = built.info()
    assert (info["train_size"], info["valid_size"], info["eval_size"]) == (640, 320, 100)
    assert info["split"] == "cifar10_valid_split"
    assert info["cifar10_sha256"] == data.cifar10_fingerprint(data_dir)
    other = data.build_search_data(data_dir, "cpu", seed=1, **kwargs)
    assert torch.equal(other.eval_images, built.eval_images)
    x0, _ = next(built.train.epoch_batches(0))
    assert not torch.equal(x0, next(other.train.epoch_batches(0))[0])
    assert not torch.equal(x0, next(built.valid.epoch_batches(0))[0])
    with pytest.raises(UsageError, match="train_size"):
        data.build_search_data(data_dir, "cpu", 64, 30_000, 0, 0, seed=0)


def test_the_halves_split_is_the_first_and_last_25k_training_images(
    data_dir: Path, cifar10: tuple[data.ImageSet, data.ImageSet]
) -> None:
    """``split=halves`` (lineage 2: DrNAS's ``indices[:split]`` / ``indices[split:]``)."""
    halves = data.halves_split()
    assert halves["train"].tolist() == list(range(25_000))
    assert halves["valid"].tolist() == list(range(25_000, 50_000))
    assert data.split_file_name("halves") == data.HALVES_SPLIT
    assert data.split_file_name("nb201") == "cifar10_valid_split"
    kwargs = dict(batch_size=64, train_size=128, valid_size=64, eval_size=32)
    built = data.build_search_data(data_dir, "cpu", seed=0, split_name=data.HALVES_SPLIT, **kwargs)
    train, _ = cifar10
    assert torch.equal(built.train.images, train.images[:128])
    assert torch.equal(built.valid.labels, train.labels[25_000:25_064])
    assert torch.equal(built.eval_labels, train.labels[25_000:25_032])
    assert built.info()["split"] == data.HALVES_SPLIT
