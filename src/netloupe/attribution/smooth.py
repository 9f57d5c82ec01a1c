"""SmoothGrad (Smilkov et al. 2017) and its squared and VarGrad variants, over any method."""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from ..errors import InputError
from ..runtime import batch_size as pick_batch_size
from ..runtime import chunks, generator
from .gradients import prepare, saliency
from .result import Attribution
from .targets import Target, TargetLike

KINDS = ("smoothgrad", "squared", "vargrad")


def noise_batch(x: torch.Tensor, samples: int, noise: float, seed: Optional[int]) -> torch.Tensor:
    """Gaussian noise for each of ``samples`` copies of every input, laid out sample-major
    (input i's copies are rows i*samples .. i*samples + samples - 1); sigma is ``noise`` times
    each input's max - min, as Smilkov et al. define it."""
    sigma = noise * (x.amax(dim=tuple(range(1, x.dim()))) - x.amin(dim=tuple(range(1, x.dim()))))
    eps = torch.randn((x.shape[0] * samples, *x.shape[1:]), generator=generator(seed, x.device),
                      device=x.device, dtype=x.dtype)
    return eps * sigma.repeat_interleave(samples).view(-1, *([1] * (x.dim() - 1)))


def smoothgrad(model, inputs, target: TargetLike = "top", method: Union[Callable, str] = saliency,
               samples: int = 50, noise: float = 0.15, kind: str = "smoothgrad", batch_size: Optional[int] = None,
               seed: Optional[int] = None, **method_kw) -> Attribution:
    """Average an attribution method over noisy copies of each input.

    kind: "smoothgrad" (mean), "squared" (mean of squares) or "vargrad" (variance).
    batch_size: noisy copies per call of ``method`` (default 8 on CPU, 64 on GPU).
    """
    from . import METHODS

    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if samples < 1:
        raise InputError(f"samples must be >= 1; got {samples}")
    fn = METHODS.get(method) if isinstance(method, str) else method
    if fn is None or not callable(fn):
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)} or pass a function")
    loaded, x, t = prepare(model, inputs, target)
    n = x.shape[0]
    noisy = x.repeat_interleave(samples, dim=0) + noise_batch(x, samples, noise, seed)
    rows = torch.arange(n).repeat_interleave(samples)
    bs = pick_batch_size(batch_size, x.device, cpu=8, gpu=64)
    total = total_sq = None
    for sl in chunks(n * samples, bs):
        r = rows[sl]
        sub = Target(classes=t.classes[r] if t.classes is not None else None, unit=t.unit, fn=t.fn)
        a = fn(loaded, noisy[sl], target=_as_user_target(sub), **method_kw).values
        if total is None:
            total = torch.zeros((n, *a.shape[1:]), dtype=a.dtype, device=a.device)
            total_sq = torch.zeros_like(total)
        idx = r.to(a.device)
        total.index_add_(0, idx, a)
        total_sq.index_add_(0, idx, a * a)
    mean, mean_sq = total / samples, total_sq / samples
    values = {"smoothgrad": mean, "squared": mean_sq, "vargrad": mean_sq - mean * mean}[kind]
    name = getattr(fn, "__name__", "method")
    return Attribution(values, f"smoothgrad[{name}]" if kind == "smoothgrad" else f"{kind}[{name}]",
                       t.describe(), x.detach(), loaded.preprocess,
                       extra={"samples": samples, "noise": noise, "kind": kind})


def _as_user_target(t: Target):
    if t.classes is not None:
        return t.classes
    return t.unit if t.unit is not None else t.fn
