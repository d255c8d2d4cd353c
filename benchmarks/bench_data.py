"""Augmented CIFAR-10 batches per second: harness TensorLoader vs a per-image PIL pipeline.

The baseline is what a torchvision ``transforms.Compose([RandomCrop(32, padding=4),
RandomHorizontalFlip(), ToTensor(), Normalize(mean, std)])`` pipeline does per
image, written by hand with PIL and numpy (torchvision cannot be installed next to
this torch): pad with zeros, crop at a random offset, maybe mirror, scale to
[0, 1], normalise, HWC → CHW, then stack the batch. It runs in the main process
(``num_workers=0``). Both sides draw from the same 50k CIFAR-10 training images,
batch 64, shuffled; blocks of batches alternate A B A B ... Target: ≥ 10×.

    python benchmarks/bench_data.py [--json] [--repeats N] [--block B]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from bench_supernet import apply_threads, base_parser, emit, interleaved, median
from PIL import Image

from harness.data import CIFAR10_MEAN, CIFAR10_STD, TensorLoader, load_cifar10
from harness.paths import find_data_dir

BATCH = 64
PAD = 4
TARGET = 10.0


class PilPipeline:
    """Per-image PIL + numpy augmentation, as a torchvision transform chain would do it."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, seed: int) -> None:
        self.images, self.labels = images_hwc, labels
        self.rng = np.random.default_rng(seed)
        self.mean = np.asarray(CIFAR10_MEAN, dtype=np.float32)
        self.std = np.asarray(CIFAR10_STD, dtype=np.float32)

    def transform(self, pixels: np.ndarray) -> np.ndarray:
        image = Image.fromarray(pixels)
        side = image.width
        padded = Image.new("RGB", (side + 2 * PAD, side + 2 * PAD))
        padded.paste(image, (PAD, PAD))
        left, top = (int(v) for v in self.rng.integers(0, 2 * PAD + 1, size=2))
        image = padded.crop((left, top, left + side, top + side))
        if self.rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        array = np.asarray(image, dtype=np.float32) / 255.0
        return ((array - self.mean) / self.std).transpose(2, 0, 1)

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            order = self.rng.permutation(len(self.labels))
            for start in range(0, len(order) - BATCH + 1, BATCH):
                index = order[start : start + BATCH]
                images = np.stack([self.transform(self.images[i]) for i in index])
                yield torch.from_numpy(images), torch.from_numpy(self.labels[index])


def tensor_batches(loader: TensorLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    epoch = 0
    while True:
        yield from loader.epoch_batches(epoch)
        epoch += 1


def block(batches: Iterator, count: int) -> Callable[[], None]:
    def take() -> None:
        for _ in range(count):
            next(batches)

    return take


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], repeats=5)
    parser.add_argument("--block", type=int, default=20, help="batches per timed block")
    args = parser.parse_args()
    apply_threads(args.threads)
    train, _ = load_cifar10(find_data_dir())
    hwc = train.images.permute(0, 2, 3, 1).contiguous().numpy()
    pil = PilPipeline(hwc, train.labels.numpy(), seed=0)
    loader = TensorLoader(train.images, train.labels, BATCH, augment=True, seed=0)
    variants = {
        "pil": block(pil.batches(), args.block),
        "tensor": block(tensor_batches(loader), args.block),
    }
    times = interleaved(variants, args.repeats)
    pil_rate = args.block / median(times["pil"])
    tensor_rate = args.block / median(times["tensor"])
    ratio = tensor_rate / pil_rate
    payload = {
        "device": "cpu",
        "batch": BATCH,
        "block": args.block,
        "repeats": args.repeats,
        "pil_batches_s": pil_rate,
        "tensor_batches_s": tensor_rate,
        "ratio": ratio,
        "target": TARGET,
    }
    header = ["pipeline", "batches/s", "images/s"]
    rows = [
        ["per-image PIL + numpy", pil_rate, pil_rate * BATCH],
        ["TensorLoader (batched)", tensor_rate, tensor_rate * BATCH],
        ["ratio (target >= 10)", ratio, ""],
    ]
    emit("bench_data: augmented batches", header, rows, payload, args.json)


if __name__ == "__main__":
    main()
