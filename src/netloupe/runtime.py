"""How repeated work runs: batch sizes that suit the device, seeded randomness, progress bars."""

from __future__ import annotations

from typing import Iterable, Iterator, Optional

import torch
from tqdm.auto import tqdm

from .errors import NetloupeError

#: ``batch_size=None``: how many items each kind of repeated work puts through one forward pass,
#: (on the CPU, on a GPU). On the CPU small chunks run faster (less memory traffic; two render
#: batches of 8 beat one of 16 by 1.3x, benchmarks/optvis.py), a GPU keeps busy with many more.
BATCH_SIZES = {
    "integrated_gradients": (8, 64),  # path points
    "smoothgrad": (8, 64),  # noisy copies
    "occlusion": (16, 256),  # occluded copies
    "metrics": (16, 128),  # deletion / insertion steps
    "render": (8, 64),  # images optimized together
    "dropout": (8, 64),  # dropout samples matched together
    "scan": (32, 128),  # images
}


def batch_size(requested: Optional[int], device, work: str) -> int:
    """The user's batch size, or the default for this kind of ``work`` (a key of BATCH_SIZES)
    on ``device``."""
    if requested is not None:
        if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
            raise NetloupeError(f"batch_size must be a positive integer or None; got {requested!r}")
        return requested
    cpu, gpu = BATCH_SIZES[work]
    return gpu if torch.device(device).type == "cuda" else cpu


def chunks(total: int, size: int) -> Iterator[slice]:
    """Slices that cover range(total) in pieces of at most ``size``."""
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def generator(seed: Optional[int], device) -> Optional[torch.Generator]:
    """A generator on ``device`` seeded with ``seed`` (None: the global RNG is used)."""
    if seed is None:
        return None
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(int(seed))
    return g


def progress(iterable: Iterable, total: Optional[int] = None, desc: Optional[str] = None,
             enabled: bool = True):
    """A tqdm bar over ``iterable``; ``enabled=False`` (the ``progress=False`` knob) silences it."""
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)
