"""Occlusion (Zeiler & Fergus 2014): slide a window of baseline values over the input and
record how much the target score drops; many windows go through each forward pass."""

from __future__ import annotations

import math
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union, cast

import torch

from .. import runtime
from ..errors import InputError
from ..runtime import batch_size as pick_batch_size
from ..runtime import chunks
from .engine import (
    Attribution,
    MethodInputs,
    ModelLike,
    TargetLike,
    make_baselines,
    per_input,
    prepare,
    target_scores,
    unpack,
)
from .registry import register


def window_shape(v: Union[int, Sequence[int]], shape: Sequence[int], name: str) -> Tuple[int, ...]:
    """A window (or stride) for one sample of ``shape``. An int w: (C, w, w) for an image
    [C, H, W] (all channels at once; (C, w, w, w) for [C, T, H, W]), (w, D) for tokens or rows
    [T, D] (whole rows), (w,) for features [D]. A tuple: one size per dimension, or for an
    image (h, w) with all channels."""
    rank = len(shape)
    if isinstance(v, int) and not isinstance(v, bool):
        if rank == 1:
            return (v,)
        if rank == 2:
            return (v, shape[1])
        return (shape[0],) + (v,) * (rank - 1)
    try:
        v = tuple(int(i) for i in cast(Iterable[Any], v))  # anything else (a bool) raises TypeError
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an int or a tuple of ints; got {v!r}") from None
    if rank >= 3 and len(v) == rank - 1:
        v = (shape[0],) + v
    if len(v) != rank:
        raise InputError(f"{name} {v} has {len(v)} sizes for inputs with {rank} dimensions per sample "
                         f"{tuple(shape)}; give an int or one size per dimension")
    return v


#: by default the windows take this many positions along each occluded axis (windows twice the stride)
RESOLUTION = 16


def default_window(shape: Sequence[int], window: Optional[Tuple[int, ...]], stride: Optional[Tuple[int, ...]]
                   ) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Window and stride (per dimension, as window_shape gives them) where one or both are not
    given. Neither: a stride of 1/RESOLUTION of each occluded axis (an image's height and width,
    a token axis, a feature vector) and a window of twice the stride, so an image of any size
    costs RESOLUTION**2 forward passes (224 px: a 28 px window every 14 px, 15 x 15 windows).
    One given: the window is twice the stride, the stride half the window."""
    if window is None:
        if stride is None:
            occluded = range(1, len(shape)) if len(shape) >= 3 else range(1)
            stride = tuple(max(1, a // RESOLUTION) if d in occluded else a for d, a in enumerate(shape))
        return tuple(min(a, 2 * s) for a, s in zip(shape, stride)), stride
    return window, stride if stride is not None else tuple(max(1, w // 2) for w in window)


def window_starts(size: int, window: int, stride: int) -> List[int]:
    """Where the windows along one axis start: every ``stride`` from 0, as many as it takes to
    reach the end; the last one is cut at the edge when (size - window) is not a multiple of
    the stride (captum's rule), so every position is covered."""
    return [k * stride for k in range(math.ceil((size - window) / stride) + 1)]


def _check(shape: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> None:
    for size, w, s in zip(shape, window, stride):
        if w < 1 or s < 1 or w > size:
            raise InputError(f"window {tuple(window)} with stride {tuple(stride)} does not fit an input of "
                             f"shape {tuple(shape)}")
        if s > w and w < size:
            raise InputError(f"stride {tuple(stride)} is larger than window {tuple(window)}: the positions between "
                             "windows would never be occluded; use a stride no larger than the window")


def _axis_masks(size: int, window: int, stride: int, device: torch.device) -> torch.Tensor:
    """[windows, size]: which positions each window along one axis covers."""
    starts = torch.tensor(window_starts(size, window, stride), device=device)
    pos = torch.arange(size, device=device)
    return (pos >= starts[:, None]) & (pos < starts[:, None] + window)


def _window_masks(axes: List[torch.Tensor], index: torch.Tensor) -> torch.Tensor:
    """Masks [len(index), *shape] of the windows numbered ``index`` (row-major over the axes)."""
    counts = [a.shape[0] for a in axes]
    mask: Optional[torch.Tensor] = None
    for d, a in reversed(list(enumerate(axes))):
        m = a[index % counts[d]].view(len(index), *[1] * d, a.shape[1], *[1] * (len(axes) - d - 1))
        mask = m if mask is None else mask & m
        index = index // counts[d]
    assert mask is not None  # there is at least one axis
    return mask


def _coverage(axes: List[torch.Tensor]) -> torch.Tensor:
    """How many windows cover each position: the product of the per-axis counts."""
    count: Optional[torch.Tensor] = None
    for d, a in enumerate(axes):
        c = a.sum(0).view(*[1] * d, a.shape[1], *[1] * (len(axes) - d - 1))
        count = c if count is None else count * c
    assert count is not None  # there is at least one axis
    return count


@register(quick={"window": 8, "stride": 8, "progress": False}, rank=100)
def occlusion(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
              window: Union[None, int, Sequence[int]] = None, stride: Union[None, int, Sequence[int]] = None,
              baseline: Union[float, torch.Tensor, str, Tuple[Union[float, torch.Tensor, str], ...]] = 0,
              batch_size: Optional[int] = None, progress: bool = True, forward_args: object = None) -> Attribution:
    """Each position gets the mean drop of the target score over the windows that cover it.

    window and stride: see window_shape (an int, (h, w) or one size per dimension); the stride
    may not exceed the window; not given: see default_window (an image of any size gets 15 x 15
    windows of 1/8 of its side). Windows start every stride from 0 along each axis, and where the
    last one would pass the edge it is cut there (as captum does), so every position is
    covered. Several inputs (a tuple) are occluded one at a time, the others left as they are;
    window, stride and baseline may then be tuples with one entry per input.
    batch_size: occluded copies per forward pass (default 16 on CPU, 256 on GPU).
    """
    c = prepare(model, inputs, target, forward_args)
    k = len(c.xs)
    bases = make_baselines(c.xs, baseline)
    plans: List[Tuple[Tuple[int, ...], Tuple[int, ...], List[torch.Tensor]]] = []
    for x, w, s in zip(c.xs, per_input(window, k, "window"), per_input(stride, k, "stride")):
        shape = tuple(x.shape[1:])
        win, std = default_window(shape, None if w is None else window_shape(w, shape, "window"),
                                  None if s is None else window_shape(s, shape, "stride"))
        _check(shape, win, std)
        plans.append((win, std, [_axis_masks(*a, x.device) for a in zip(shape, win, std)]))
    bs = pick_batch_size(batch_size, c.xs[0].device, "occlusion")
    module, n = c.loaded.module, c.n
    clean = target_scores(module, c.xs, c.target, batch_size=bs, extra=c.extra)
    work = [(j, sl) for j, (_, _, axes) in enumerate(plans) for sl in chunks(n * math.prod(len(a) for a in axes), bs)]
    totals = [torch.zeros_like(x) for x in c.xs]
    for j, sl in runtime.progress(work, desc="occlusion", enabled=progress):
        axes = plans[j][2]
        p = math.prod(len(a) for a in axes)
        r = torch.arange(sl.start, sl.stop, device=c.xs[j].device)
        samples = r // p
        masks = _window_masks(axes, r % p)
        points = [x[samples] for x in c.xs]
        points[j] = torch.where(masks, bases[j][samples], points[j])
        drop = clean[samples] - target_scores(module, points, c.target, samples.cpu(), batch_size=bs, extra=c.extra)
        totals[j].index_add_(0, samples, drop.view(-1, *[1] * (masks.dim() - 1)) * masks)
    values = tuple(total / _coverage(axes).to(total) for total, (_, _, axes) in zip(totals, plans))
    return c.result(values, "occlusion", extra={"window": unpack(tuple(p[0] for p in plans), c.several),
                                               "stride": unpack(tuple(p[1] for p in plans), c.several)})
