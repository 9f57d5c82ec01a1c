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

RULES = ("adaptive", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle", "gausslegendre")


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


def _trapezoid_weights(alphas: torch.Tensor) -> torch.Tensor:
    """Trapezoid weights for sorted nodes on [0, 1] (rows are independent grids)."""
    gaps = alphas[:, 1:] - alphas[:, :-1]
    w = torch.zeros_like(alphas)
    w[:, :-1] += gaps / 2
    w[:, 1:] += gaps / 2
    return w


def _fill(nodes: torch.Tensor, err: torch.Tensor, r: int) -> torch.Tensor:
    """``r`` new nodes, shared out among the intervals in proportion to their error (largest
    remainders first) and spaced evenly inside each."""
    share = r * err / err.sum() if err.sum() > 0 else torch.full_like(err, r / len(err))
    k = share.floor().long()
    k[(share - k).argsort(descending=True)[: r - int(k.sum())]] += 1
    new = [nodes[i] + (nodes[i + 1] - nodes[i]) * torch.arange(1, c + 1, dtype=nodes.dtype) / (c + 1)
           for i, c in enumerate(k.tolist()) if c]
    return torch.cat(new)


def _adaptive_path(module, x, base, t, steps, bs):
    """Adaptive trapezoid quadrature of the path integral, ``steps`` gradients per sample.

    Every gradient evaluation also gives the score f(alpha), so each interval's trapezoid
    error is known exactly: f(b) - f(a) - (b - a)(f'(a) + f'(b)) / 2 with f' = grad . (x - b).
    Starting from a uniform grid, each round places new nodes in the intervals in proportion
    to their error. Scores often jump right next to the baseline, where a uniform grid
    wastes its points.
    """
    n = x.shape[0]
    diff = x - base
    per_round = max(2, steps // 10)  # independent of the batch, so a batch equals its samples alone
    alphas = torch.linspace(0, 1, per_round, dtype=torch.float64).repeat(n, 1)  # [n, m]

    def evaluate(new):  # [n, r] alphas -> gradients, scores and path slopes there
        r = new.shape[1]
        samples = torch.arange(n).repeat_interleave(r)
        a = new.reshape(-1).to(x).view(-1, 1, 1, 1)
        g, s = input_gradients(module, base[samples] + a * diff[samples], t, samples, batch_size=bs)
        g = g.view(n, r, *x.shape[1:])
        return g, s.view(n, r).double().cpu(), (g * diff[:, None]).flatten(2).sum(2).double().cpu()

    grads, f, slope = evaluate(alphas)
    while alphas.shape[1] < steps:
        r = min(steps - alphas.shape[1], per_round)
        order = alphas.argsort(1)
        a_s, f_s, d_s = (v.gather(1, order) for v in (alphas, f, slope))
        width = a_s[:, 1:] - a_s[:, :-1]
        err = ((f_s[:, 1:] - f_s[:, :-1]) - width * (d_s[:, 1:] + d_s[:, :-1]) / 2).abs()
        new = torch.stack([_fill(a_s[i], err[i], r) for i in range(n)])
        g, f_new, d_new = evaluate(new)
        alphas, f, slope = torch.cat([alphas, new], 1), torch.cat([f, f_new], 1), torch.cat([slope, d_new], 1)
        grads = torch.cat([grads, g], 1)
    order = alphas.argsort(1)
    w = _trapezoid_weights(alphas.gather(1, order))
    weights = torch.empty_like(w).scatter_(1, order, w).to(x)
    return (grads * weights.view(n, -1, *([1] * (x.dim() - 1)))).sum(1)


def integrated_gradients(model, inputs, target: TargetLike = "top", baseline: Union[float, torch.Tensor, str] = 0,
                         steps: int = 50, method: str = "adaptive", batch_size: Optional[int] = None,
                         seed: Optional[int] = None) -> Attribution:
    """(x - baseline) times the path integral of the gradient from baseline to x.

    method: "adaptive" (the default) spends the ``steps`` gradients where the score changes
    fastest along the path (see _adaptive_path); "riemann_*" and "gausslegendre" are the
    fixed rules (captum's names; our trapezoid's weights sum to 1, captum's to (n-1)/n).
    ``result.delta`` is the completeness gap per sample: sum of attributions minus
    (f(x) - f(baseline)); it shrinks as ``steps`` grows. ``batch_size`` is the number of
    path points per forward pass (default: 8 on CPU, 64 on GPU).
    """
    loaded, x, t = prepare(model, inputs, target)
    base = make_baseline(x, baseline, seed)
    n = x.shape[0]
    diff = x - base
    bs = pick_batch_size(batch_size, x.device, cpu=8, gpu=64)
    if method == "adaptive":
        if steps < 3:
            raise InputError(f"adaptive integrated gradients needs steps >= 3; got {steps}")
        total = _adaptive_path(loaded.module, x, base, t, steps, bs)
    else:
        alphas, weights = path_points(steps, method)
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
