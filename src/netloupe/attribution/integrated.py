"""Integrated gradients (Sundararajan et al. 2017), batched over steps and samples."""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple, Union

import numpy as np
import torch

from ..errors import InputError
from ..runtime import batch_size as pick_batch_size
from ..runtime import chunks
from .engine import (
    Attribution,
    ForwardArgs,
    MethodInputs,
    ModelLike,
    Target,
    TargetLike,
    Tensors,
    completeness_gap,
    input_gradients,
    make_baselines,
    prepare,
    target_scores,
    unpack,
)
from .registry import register

QUADRATURES = ("adaptive", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle", "gausslegendre")


@functools.lru_cache(maxsize=64)  # Gauss-Legendre's nodes take a root-finding per call
def path_points(steps: int, quadrature: str) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """(alphas, weights) of a quadrature rule for the integral over [0, 1] (tuples: they are cached)."""
    if steps < 1 or (quadrature == "riemann_trapezoid" and steps < 2):
        raise InputError(f"integrated gradients needs steps >= {2 if quadrature == 'riemann_trapezoid' else 1}; "
                         f"got {steps}")
    n = steps
    if quadrature == "riemann_trapezoid":
        alphas = np.linspace(0, 1, n)
        weights = np.full(n, 1.0 / (n - 1))
        weights[[0, -1]] /= 2
    elif quadrature in ("riemann_left", "riemann_right", "riemann_middle"):
        offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[quadrature]
        alphas = (np.arange(n) + offset) / n
        weights = np.full(n, 1.0 / n)
    elif quadrature == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        alphas, weights = (nodes + 1) / 2, w / 2
    else:
        raise InputError(f"unknown quadrature {quadrature!r}; choose one of {', '.join(QUADRATURES)}")
    return tuple(alphas.tolist()), tuple(weights.tolist())


def _along(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-row numbers [R] shaped to broadcast over rows of ``x``."""
    return a.to(x).view(-1, *([1] * (x.dim() - 1)))


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


def round_size(steps: int, device: torch.device) -> int:
    """Path points per sample in each round of the adaptive rule. A CPU works through rows at
    about the same rate in one pass or several, so up to ten rounds (of at least 4 points, so that
    the first grid sees the path's shape) give the placement the most chances; on a GPU each
    round is a pass that waits for the last, so two rounds: a uniform grid and one refinement."""
    return max(4, steps // 10) if device.type == "cpu" else -(-steps // 2)


def _interval_errors(alphas: torch.Tensor, f: torch.Tensor, slope: torch.Tensor, grads: Tensors,
                     diffs: Tensors) -> torch.Tensor:
    """Each interval's estimated share of the relative error of the attribution [n, m - 1] for
    sorted nodes ``alphas`` [n, m] with scores ``f``, path slopes and per-input gradients.

    Two parts, each in units of the score and each relative to what it measures: the interval's
    L1 error bound h * |(G(b) - G(a)) * (x - baseline)|_1 / 2 (exact as a bound where every pixel's
    gradient is monotone inside the interval) over the attribution's L1 mass, plus its trapezoid
    error of the score, f(b) - f(a) - h (f'(a) + f'(b)) / 2 (known exactly), over |f(x) - f(baseline)|,
    the completeness gap's scale. Chasing the score alone crowds the points where it jumps and
    leaves the attribution 8-13% (L1) from converged at 50 steps on the default model; this
    halves that (benchmarks/ig_accuracy.py).
    """
    n = alphas.shape[0]
    h = alphas[:, 1:] - alphas[:, :-1]
    scalar = ((f[:, 1:] - f[:, :-1]) - h * (slope[:, 1:] + slope[:, :-1]) / 2).abs()
    w = _trapezoid_weights(alphas)
    change, mass = [], []  # per input, on its device: one copy to the CPU at the end, not a sync per sample
    for g, d in zip(grads, diffs):
        rows = []
        for i in range(n):  # a sample at a time: no [n, m, ...] temporaries
            gd = (g[i] * d[i]).flatten(1)  # [m, features]: each node's gradient times (x - baseline)
            rows.append(torch.cat([(gd[1:] - gd[:-1]).abs().sum(1), (w[i].to(gd) @ gd).abs().sum()[None]]))
        both = torch.stack(rows).double().cpu()  # [n, m]: the m - 1 intervals' change, then the mass
        change.append(both[:, :-1])
        mass.append(both[:, -1])
    tiny = torch.finfo(torch.float64).tiny
    scale = (f[:, -1] - f[:, 0]).abs()
    spread, total = torch.stack(change).sum(0), torch.stack(mass).sum(0)  # over the inputs
    return h * spread / 2 / (total[:, None] + tiny) + scalar / (scale[:, None] + tiny)


def _adaptive_path(module: torch.nn.Module, xs: Tensors, bases: Tensors, t: Target, steps: int, bs: int,
                   extra: ForwardArgs) -> Tuple[Tensors, torch.Tensor]:
    """Adaptive trapezoid quadrature of the path integral, ``steps`` gradients per sample.

    Starting from a uniform grid, each round (round_size) places new nodes in the intervals in
    proportion to their estimated error (_interval_errors): every gradient evaluation also
    gives the score f(alpha), so each interval's quadrature error of the score is known, and the
    gradients at its ends bound the attribution's. Scores often jump right next to the baseline,
    where a uniform grid wastes its points. Also returns the scores at x and at the baseline
    [n, 2], which the first grid's end points gave, so the completeness gap costs no extra pass.
    """
    n = xs[0].shape[0]
    diffs = tuple(x - b for x, b in zip(xs, bases))
    per_round = min(steps, round_size(steps, xs[0].device))  # independent of the batch: a sample's result is its own
    alphas = torch.linspace(0, 1, per_round, dtype=torch.float64).repeat(n, 1)  # [n, m], sorted

    def evaluate(new: torch.Tensor) -> Tuple[Tensors, torch.Tensor, torch.Tensor]:  # [n, r] alphas -> per-input gradients [n, r, ...], scores and path slopes there
        r = new.shape[1]
        samples = torch.arange(n).repeat_interleave(r)
        a = new.reshape(-1)
        points = tuple(b[samples] + _along(a, d) * d[samples] for b, d in zip(bases, diffs))
        g, s = input_gradients(module, points, t, samples, batch_size=bs, extra=extra)
        g = tuple(gi.view(n, r, *d.shape[1:]) for gi, d in zip(g, diffs))
        slope = torch.stack([(gi * d[:, None]).flatten(2).sum(2) for gi, d in zip(g, diffs)]).sum(0)
        return g, s.view(n, r).double().cpu(), slope.double().cpu()

    grads, f, slope = evaluate(alphas)
    ends = f[:, [-1, 0]].to(device=xs[0].device, dtype=xs[0].dtype)  # alpha = 1 and 0
    while alphas.shape[1] < steps:
        r = min(steps - alphas.shape[1], per_round)
        err = _interval_errors(alphas, f, slope, grads, diffs)
        new = torch.stack([_fill(alphas[i], err[i], r) for i in range(n)])
        g, f_new, d_new = evaluate(new)
        order = torch.cat([alphas, new], 1).argsort(1)
        alphas, f, slope = (torch.cat([old, more], 1).gather(1, order)
                            for old, more in ((alphas, new), (f, f_new), (slope, d_new)))
        grads = tuple(torch.cat([old, more], 1)[torch.arange(n)[:, None], order.to(old.device)]
                      for old, more in zip(grads, g))
    w = _trapezoid_weights(alphas)
    return tuple((g * w.to(g).view(n, -1, *([1] * (g.dim() - 2)))).sum(1) for g in grads), ends


def _fixed_path(module: torch.nn.Module, xs: Tensors, bases: Tensors, t: Target, steps: int, quadrature: str, bs: int,
                extra: ForwardArgs) -> Tensors:
    """A fixed quadrature rule: path points built a chunk at a time (row r is step r // n of
    sample r % n), weighted gradients summed per sample."""
    n = xs[0].shape[0]
    alphas, weights = (torch.tensor(v, dtype=torch.float64) for v in path_points(steps, quadrature))
    totals = tuple(torch.zeros_like(x) for x in xs)
    for sl in chunks(steps * n, bs):
        r = torch.arange(sl.start, sl.stop)
        samples, k = r % n, r // n
        points = tuple(b[samples] + _along(alphas[k], x) * (x - b)[samples] for x, b in zip(xs, bases))
        grads, _ = input_gradients(module, points, t, samples, extra=extra)
        for total, g in zip(totals, grads):
            total.index_add_(0, samples.to(total.device), g * _along(weights[k], g))
    return totals


@register(quick={"steps": 3}, rank=50)
def integrated_gradients(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
                         baseline: Union[float, torch.Tensor, str, Tuple[Any, ...]] = 0,
                         steps: int = 50, quadrature: str = "adaptive", batch_size: Optional[int] = None,
                         seed: Optional[int] = None, multiply_by_inputs: bool = True,
                         forward_args: Any = None) -> Attribution:
    """(x - baseline) times the path integral of the gradient from baseline to x.

    quadrature: "adaptive" (the default) spends the ``steps`` gradients where the attribution and
    the score are least resolved along the path, in rounds (see round_size: up to ten on a
    CPU, two on a GPU, so results differ slightly between the two); "riemann_*" and
    "gausslegendre" are the fixed rules (captum's names; our trapezoid's weights sum to 1,
    captum's to (n-1)/n). ``result.delta`` is the completeness gap per sample: sum of
    attributions minus (f(x) - f(baseline)); it shrinks as ``steps`` grows, but as a signed sum
    of errors it is a loose measure of how converged the map is (benchmarks/ig_accuracy.py).
    ``batch_size`` is the number of path points per forward pass (default: 8 on CPU, 64 on GPU).
    ``multiply_by_inputs=False`` gives the path-integrated gradient alone (captum's option; ``delta`` still measures the
    quadrature of the full attribution). Several inputs (a tuple) move along the path together;
    ``baseline`` may then be a tuple with one per input.
    """
    c = prepare(model, inputs, target, forward_args)
    bases = make_baselines(c.xs, baseline, seed)
    n, module = c.n, c.loaded.module
    bs = pick_batch_size(batch_size, c.xs[0].device, "integrated_gradients")
    if quadrature == "adaptive":
        if steps < 3:
            raise InputError(f"adaptive integrated gradients needs steps >= 3; got {steps}")
        totals, ends = _adaptive_path(module, c.xs, bases, c.target, steps, bs, c.extra)
    else:
        totals = _fixed_path(module, c.xs, bases, c.target, steps, quadrature, bs, c.extra)
        f = target_scores(module, tuple(torch.cat([x, b]) for x, b in zip(c.xs, bases)), c.target,
                          torch.arange(n).repeat(2), batch_size=bs, extra=c.extra)
        ends = torch.stack([f[:n], f[n:]], 1)
    full = tuple((x - b) * total for x, b, total in zip(c.xs, bases, totals))
    gap = ends[:, 0] - ends[:, 1]
    delta = completeness_gap(full, gap)
    return c.result(full if multiply_by_inputs else totals, "integrated_gradients", delta=delta.detach(),
                    extra={"baseline": unpack(bases, c.several), "steps": steps, "quadrature": quadrature, "gap": gap,
                           "multiply_by_inputs": multiply_by_inputs})
