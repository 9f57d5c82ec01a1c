"""Integrated gradients (Sundararajan et al. 2017), batched over steps and samples."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

from ..errors import InputError
from ..images import blur
from ..runtime import batch_size as pick_batch_size
from ..runtime import chunks, generator
from .gradients import input_gradients, prepare, target_scores
from .result import Attribution
from .targets import TargetLike

RULES = ("riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle", "gausslegendre")


def path_points(steps: int, method: str):
    """(alphas, weights) of a quadrature rule for the integral over [0, 1]."""
    if steps < 1 or (method == "riemann_trapezoid" and steps < 2):
        raise InputError(f"integrated gradients needs steps >= {2 if method == 'riemann_trapezoid' else 1}; got {steps}")
    n = steps
    if method == "riemann_trapezoid":
        alphas = np.linspace(0, 1, n)
        weights = np.full(n, 1.0 / (n - 1))
        weights[[0, -1]] /= 2
    elif method in ("riemann_left", "riemann_right", "riemann_middle"):
        offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
        alphas = (np.arange(n) + offset) / n
        weights = np.full(n, 1.0 / n)
    elif method == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        alphas, weights = (nodes + 1) / 2, w / 2
    else:
        raise InputError(f"unknown integration method {method!r}; choose one of {', '.join(RULES)}")
    return alphas.tolist(), weights.tolist()


def make_baseline(x: torch.Tensor, baseline, seed: Optional[int] = None) -> torch.Tensor:
    """A baseline batch like ``x``: a number, a tensor, "blur" (a heavily blurred input) or
    "noise" (uniform noise over the input's range)."""
    if isinstance(baseline, (int, float)):
        return torch.full_like(x, float(baseline))
    if isinstance(baseline, torch.Tensor):
        b = baseline.to(x)
        try:
            return b.expand_as(x).clone()
        except RuntimeError:
            raise InputError(f"baseline of shape {tuple(baseline.shape)} does not fit inputs {tuple(x.shape)}") from None
    if baseline == "blur":
        return blur(x, sigma=max(x.shape[-2:]) / 20)
    if baseline == "noise":
        lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
        u = torch.rand(x.shape, generator=generator(seed, x.device), device=x.device, dtype=x.dtype)
        return lo + u * (hi - lo)
    raise InputError(f"unknown baseline {baseline!r}; use a number, a tensor, 'blur' or 'noise'")


def integrated_gradients(model, inputs, target: TargetLike = "top", baseline: Union[float, torch.Tensor, str] = 0,
                         steps: int = 50, method: str = "riemann_trapezoid", batch_size: Optional[int] = None,
                         seed: Optional[int] = None) -> Attribution:
    """(x - baseline) times the path integral of the gradient from baseline to x.

    ``result.delta`` is the completeness gap per sample: sum of attributions minus
    (f(x) - f(baseline)); it shrinks as ``steps`` grows. ``batch_size`` is the number of
    path points per forward pass (default: 8 on CPU, 64 on GPU).
    """
    loaded, x, t = prepare(model, inputs, target)
    base = make_baseline(x, baseline, seed)
    alphas, weights = path_points(steps, method)
    n = x.shape[0]
    diff = x - base
    bs = pick_batch_size(batch_size, x.device, cpu=8, gpu=64)
    total = torch.zeros_like(x)
    # path points are built a chunk at a time: row r is step r // n of sample r % n
    for sl in chunks(steps * n, bs):
        r = torch.arange(sl.start, sl.stop)
        samples, k = r % n, r // n
        a = torch.tensor(alphas, dtype=x.dtype)[k].to(x.device).view(-1, 1, 1, 1)
        w = torch.tensor(weights, dtype=x.dtype)[k].to(x.device).view(-1, 1, 1, 1)
        g, _ = input_gradients(loaded.module, base[samples] + a * diff[samples], t, samples)
        total.index_add_(0, samples.to(x.device), g * w)
    values = diff * total
    f = target_scores(loaded.module, torch.cat([x, base]), t, torch.arange(n).repeat(2), batch_size=bs)
    gap = f[:n] - f[n:]
    delta = values.flatten(1).sum(1) - gap
    return Attribution(values, "integrated_gradients", t.describe(), x.detach(), loaded.preprocess,
                       delta=delta.detach(), extra={"baseline": base, "steps": steps, "method": method, "gap": gap})
