"""How repeated work runs: batch sizes that suit the device, seeded randomness, progress bars."""

from __future__ import annotations

from typing import Iterable, Iterator, Optional

import torch
from tqdm.auto import tqdm

from .errors import NetloupeError


def batch_size(requested: Optional[int], device, cpu: int, gpu: int) -> int:
    """The user's batch size, or a default for the device: on CPU small chunks run faster
    (less memory traffic), on a GPU large ones keep it busy."""
    if requested is not None:
        if not isinstance(requested, int) or requested < 1:
            raise NetloupeError(f"batch_size must be a positive integer or None; got {requested!r}")
        return requested
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
