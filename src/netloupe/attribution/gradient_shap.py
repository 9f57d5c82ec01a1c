"""GradientSHAP (Lundberg & Lee 2017; expected gradients, Erion et al. 2021): gradients at random
points between each input, with Gaussian noise, and baselines drawn from a distribution."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch

from .deeplift import distributions
from .engine import (
    Attribution,
    InputError,
    MethodInputs,
    ModelLike,
    TargetLike,
    Tensors,
    chunks,
    generator,
    input_gradients,
    per_input,
    pick_batch_size,
    prepare,
)
from .registry import register


def draws(xs: Tensors, n: int, count: int, stdevs: Tuple[float, ...],
          seed: Optional[int]) -> Tuple[torch.Tensor, torch.Tensor, Tensors]:
    """The random parts, for ``n`` points per sample: which of the ``count`` baselines each point
    takes, where between baseline and input it lies (uniform in [0, 1]), and the noise added to
    each input (sigma ``stdevs``, absolute, one per input); rows are sample-major."""
    x0 = xs[0]
    rng = generator(seed, x0.device)
    rows = x0.shape[0] * n
    which = torch.randint(count, (rows,), generator=rng, device=x0.device)
    alphas = torch.rand(rows, generator=rng, device=x0.device, dtype=x0.dtype)
    noises = tuple(torch.randn((rows, *x.shape[1:]), generator=rng, device=x.device, dtype=x.dtype) * s
                   for x, s in zip(xs, stdevs))
    return which, alphas, noises


@register(view="raw", quick={"n": 2, "seed": 0}, rank=56)
def gradient_shap(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
                  baselines: Any = None, n: int = 5, stdevs: Any = 0.0,
                  multiply_by_inputs: bool = True, batch_size: Optional[int] = None, seed: Optional[int] = None,
                  forward_args: object = None) -> Attribution:
    """The mean over ``n`` points per sample of (x + noise - baseline) times the gradient at a
    uniformly random point between a drawn baseline and the noisy input: SHAP values in
    expectation (captum's GradientShap; its defaults n=5, stdevs=0).

    baselines: as DeepLiftShap takes them (a tensor [B, ...] of baselines, or a list). stdevs:
    the noise's sigma in input units (a tuple: one per input). Few points give a noisy map; raise
    ``n`` for a smoother one. Completeness holds only in expectation, so no ``delta`` is given."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputError(f"n (points per input) must be an integer >= 1; got {n!r}")
    c = prepare(model, inputs, target, forward_args)
    sds = per_input(stdevs, len(c.xs), "stdevs")
    if any(not isinstance(s, (int, float)) or isinstance(s, bool) or not s >= 0 for s in sds):
        raise InputError(f"stdevs must be numbers >= 0 (the noise's sigma in input units); got {stdevs!r}")
    dists = distributions(c.xs, baselines, c.several, seed)
    which, alphas, noises = draws(c.xs, n, dists[0].shape[1], tuple(float(s) for s in sds), seed)
    sample = torch.arange(c.n, device=which.device).repeat_interleave(n)
    noisy = tuple(x.repeat_interleave(n, dim=0) + e for x, e in zip(c.xs, noises))
    bases = tuple(d[sample, which] for d in dists)
    totals = tuple(torch.zeros_like(x) for x in c.xs)
    rows = sample.cpu()
    for sl in chunks(c.n * n, pick_batch_size(batch_size, c.xs[0].device, "gradient_shap")):
        points = tuple(b[sl] + alphas[sl].view(-1, *([1] * (x.dim() - 1))) * (x[sl] - b[sl])
                       for x, b in zip(noisy, bases))
        grads, _ = input_gradients(c.loaded.module, points, c.target, rows=rows[sl], extra=c.extra)
        for t, g, x, b in zip(totals, grads, noisy, bases):
            part = g * (x[sl] - b[sl]) if multiply_by_inputs else g
            t.index_add_(0, sample[sl], part)
    return c.result(tuple(t / n for t in totals), "gradient_shap")
