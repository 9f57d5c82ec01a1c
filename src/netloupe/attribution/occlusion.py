"""Occlusion (Zeiler & Fergus 2014): slide a window of baseline values over the input and
record how much the target score drops; many windows go through each forward pass."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch

from ..errors import InputError
from ..runtime import batch_size as pick_batch_size
from ..runtime import chunks
from .. import runtime
from .gradients import prepare, target_scores
from .integrated import make_baseline
from .result import Attribution
from .targets import TargetLike


def _triple(v, channels: int, name: str) -> Tuple[int, int, int]:
    if isinstance(v, int):
        return (channels, v, v)
    v = tuple(int(i) for i in v)
    if len(v) == 2:
        return (channels, *v)
    if len(v) != 3:
        raise InputError(f"{name} must be an int, (h, w) or (c, h, w); got {v}")
    return v


def window_positions(shape: Sequence[int], window, stride):
    """Top-left corners (c, y, x) of every window that fits inside a [C, H, W] input."""
    axes = []
    for size, w, s in zip(shape, window, stride):
        if w < 1 or s < 1 or w > size:
            raise InputError(f"window {tuple(window)} with stride {tuple(stride)} does not fit an input of "
                             f"shape {tuple(shape)}")
        axes.append(range(0, size - w + 1, s))
    return [(c, y, x) for c in axes[0] for y in axes[1] for x in axes[2]]


def occlusion(model, inputs, target: TargetLike = "top", window: Union[int, Sequence[int]] = 16,
              stride: Union[int, Sequence[int]] = 8, baseline=0, batch_size: Optional[int] = None,
              progress: bool = True) -> Attribution:
    """Each pixel gets the mean drop of the target score over the windows that cover it.

    window and stride: an int (square, all channels at once), (h, w) or (c, h, w).
    batch_size: occluded images per forward pass (default 16 on CPU, 256 on GPU).
    """
    loaded, x, t = prepare(model, inputs, target)
    n, shape = x.shape[0], tuple(x.shape[1:])
    win = _triple(window, shape[0], "window")
    std = _triple(stride, shape[0], "stride")
    corners = window_positions(shape, win, std)
    base = make_baseline(x, baseline)
    bs = pick_batch_size(batch_size, x.device, cpu=16, gpu=256)
    clean = target_scores(loaded.module, x, t, batch_size=bs)

    def mask_of(corner):
        m = torch.zeros(shape, dtype=torch.bool, device=x.device)
        c, y, xx = corner
        m[c:c + win[0], y:y + win[1], xx:xx + win[2]] = True
        return m

    count = torch.zeros(shape, dtype=x.dtype, device=x.device)
    for corner in corners:
        c, y, xx = corner
        count[c:c + win[0], y:y + win[1], xx:xx + win[2]] += 1
    total = torch.zeros_like(x)
    p = len(corners)
    for sl in runtime.progress(list(chunks(n * p, bs)), desc="occlusion", enabled=progress):
        r = torch.arange(sl.start, sl.stop)
        samples, pos = r // p, r % p
        masks = torch.stack([mask_of(corners[i]) for i in pos.tolist()])
        occluded = torch.where(masks, base[samples], x[samples])
        drop = clean[samples] - target_scores(loaded.module, occluded, t, samples, batch_size=bs)
        total.index_add_(0, samples.to(x.device), drop.view(-1, 1, 1, 1) * masks)
    values = torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))
    return Attribution(values, "occlusion", t.describe(), x.detach(), loaded.preprocess,
                       extra={"window": win, "stride": std})
