"""Device facts the harness needs beyond ``torch.device``: moving small host tensors
to a GPU without stalling it, and telling physical GPUs apart.

A plain ``tensor.to("cuda")`` from ordinary (pageable) host memory waits until the GPU
has finished everything queued before it: a host sync, which leaves the GPU idle while
the host queues the next kernels. :func:`to_device` copies through pinned memory
instead, so the copy is queued like a kernel and the host goes on.

A GPU's index is relative to ``CUDA_VISIBLE_DEVICES`` and means a different card in
another process with another mask; :func:`physical_id` names the card itself.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor


def to_device(host: Tensor, device: torch.device) -> Tensor:
    """``host.to(device)`` without a host sync on CUDA: through pinned memory, copied
    asynchronously on the current stream (the caching host allocator keeps the pinned
    buffer alive until the copy is done). Elsewhere a plain ``to``."""
    if host.device.type != "cpu":
        return host.to(device)
    if device.type == "cuda":
        host = host.pin_memory()
    return host.to(device, non_blocking=True)  # from host memory: safe to not wait


def physical_id(index: int) -> str:
    """A name of CUDA device ``index`` (as this process numbers it) that is the same in
    every process on the machine: its UUID where torch reports one (torch >= 2.1 on
    NVIDIA), else the entry of ``CUDA_VISIBLE_DEVICES`` it maps to, else the index."""
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid:
        return f"gpu-{uuid}"
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    if visible != [""] and index < len(visible):
        return f"gpu-visible-{visible[index]}"
    return f"gpu-{index}"
