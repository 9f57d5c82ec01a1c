"""SmoothGrad (Smilkov et al. 2017) and its squared and VarGrad variants, over any method."""

from __future__ import annotations

from typing import Any, List, Optional, Union, cast

import torch

from ..errors import InputError
from ..runtime import batch_size as pick_batch_size
from ..runtime import chunks, generator
from ..units import Unit
from .engine import Attribution, MethodInputs, ModelLike, ScoreFn, Target, TargetLike, as_tensors, per_input, prepare
from .registry import MethodFn, lookup, register

KINDS = ("smoothgrad", "squared", "vargrad")


def noise_batch(x: torch.Tensor, n: int, noise: float, seed: Optional[int] = None,
                rng: Optional[torch.Generator] = None) -> torch.Tensor:
    """Gaussian noise for each of ``n`` copies of every input, laid out sample-major (input i's
    copies are rows i*n .. i*n + n - 1); sigma is ``noise`` times
    each input's max - min, as Smilkov et al. define it. Drawn from ``rng`` if given, else
    from a generator seeded with ``seed``."""
    dims = tuple(range(1, x.dim()))
    sigma = noise * (x.amax(dim=dims) - x.amin(dim=dims))
    eps = torch.randn((x.shape[0] * n, *x.shape[1:]), generator=rng or generator(seed, x.device),
                      device=x.device, dtype=x.dtype)
    return eps * sigma.repeat_interleave(n).view(-1, *([1] * (x.dim() - 1)))


@register(quick={"n": 2, "seed": 0}, rank=60)
def smoothgrad(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
               method: Union[MethodFn, str] = "saliency",
               n: int = 50, noise: float = 0.15, kind: str = "smoothgrad", batch_size: Optional[int] = None,
               seed: Optional[int] = None, forward_args: object = None, **method_kw: Any) -> Attribution:
    """Average an attribution method over ``n`` noisy copies of each input.

    kind: "smoothgrad" (mean), "squared" (mean of squares) or "vargrad" (variance).
    noise: sigma as a fraction of each input's range, >= 0 (a tuple: one per input).
    batch_size: noisy copies per call of ``method`` (default 8 on CPU, 64 on GPU).
    Several inputs each get their own noise; ``forward_args`` follow their sample.
    """
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputError(f"n (noisy copies per input) must be an integer >= 1; got {n!r}")
    fn = lookup(method)
    c = prepare(model, inputs, target, forward_args)
    noises = per_input(noise, len(c.xs), "noise")
    if any(not isinstance(s, (int, float)) or isinstance(s, bool) or not s >= 0 for s in noises):
        raise InputError(f"noise must be a number >= 0 (a fraction of each input's range); got {noise!r}")
    count = c.n
    rng = generator(seed, c.xs[0].device)  # one stream: each input gets noise of its own
    noisy = tuple(x.repeat_interleave(n, dim=0) + noise_batch(x, n, s, seed, rng)
                  for x, s in zip(c.xs, noises))
    rows = torch.arange(count).repeat_interleave(n)
    bs = pick_batch_size(batch_size, c.xs[0].device, "smoothgrad")
    total: Optional[List[Optional[torch.Tensor]]] = None  # per input; None where the method gives none
    total_sq: Optional[List[Optional[torch.Tensor]]] = None
    t = c.target
    for sl in chunks(count * n, bs):
        r = rows[sl]
        sub = Target(classes=t.classes[r] if t.classes is not None else None, unit=t.unit, fn=t.fn)
        part = tuple(x[sl] for x in noisy)
        a = fn(c.loaded, part if c.several else part[0], target=_as_user_target(sub),
               forward_args=c.extra.take(r), **method_kw)
        values = as_tensors(a.values)
        if total is None or total_sq is None:
            total = [None if v is None else torch.zeros((count, *v.shape[1:]), dtype=v.dtype, device=v.device)
                     for v in values]
            total_sq = [None if v is None else torch.zeros_like(v) for v in total]
        for v, s1, s2 in zip(values, total, total_sq):
            if v is None or s1 is None or s2 is None:
                continue
            idx = r.to(v.device)
            s1.index_add_(0, idx, v)
            s2.index_add_(0, idx, v * v)
    assert total is not None and total_sq is not None  # count * n >= 1: the loop ran
    stats: List[Optional[torch.Tensor]] = []
    for s1, s2 in zip(total, total_sq):
        if s1 is None or s2 is None:
            stats.append(None)
            continue
        mean, mean_sq = s1 / n, s2 / n
        stats.append({"smoothgrad": mean, "squared": mean_sq, "vargrad": mean_sq - mean * mean}[kind])
    name = method if isinstance(method, str) else getattr(fn, "__name__", "method")
    clean = tuple(x.detach() for x in c.xs)
    several = isinstance(a.values, tuple)  # a CAM gives one map even for several inputs: drawn on one of them
    return Attribution(tuple(stats) if several else cast(torch.Tensor, stats[0]),  # one input: never None
                       f"smoothgrad[{name}]" if kind == "smoothgrad" else f"{kind}[{name}]", t.describe(),
                       clean if several else clean[a.extra.get("input", 0)], c.loaded.preprocess,
                       extra={"n": n, "noise": noise, "kind": kind})


def _as_user_target(t: Target) -> Union[torch.Tensor, Unit, ScoreFn, None]:
    if t.classes is not None:
        return t.classes
    return t.unit if t.unit is not None else t.fn
