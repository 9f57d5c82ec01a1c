"""DeepLIFT (Shrikumar et al. 2017) with the rescale rule, and DeepLiftShap over a baseline
distribution (Lundberg & Lee 2017), with captum's semantics."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch

from .engine import (
    Attribution,
    InputError,
    MethodInputs,
    ModelLike,
    Prepared,
    TargetLike,
    Tensors,
    chunks,
    completeness_gap,
    input_gradients,
    make_baseline,
    make_baselines,
    pick_batch_size,
    prepare,
)
from .registry import register


def multipliers(c: Prepared, xs: Tensors, bases: Tensors, rows: torch.Tensor,
                batch_size: Optional[int]) -> Tuple[Tensors, torch.Tensor]:
    """DeepLIFT's multipliers of each row of ``xs`` against its reference in ``bases`` (row i
    explains sample ``rows[i]``), and each row's score difference f(x) - f(x'). Each pass runs a
    chunk of inputs followed by their references, so the rescale rule sees both."""
    n = xs[0].shape[0]
    out = tuple(torch.empty_like(x) for x in xs)
    gaps = torch.empty(n, dtype=xs[0].dtype, device=xs[0].device)
    for sl in chunks(n, pick_batch_size(batch_size, xs[0].device, "deeplift")):
        pair = tuple(torch.cat([x[sl], b[sl]]) for x, b in zip(xs, bases))
        grads, scores = input_gradients(c.loaded.module, pair, c.target, rows=torch.cat([rows[sl], rows[sl]]),
                                        rule="rescale", extra=c.extra)
        k = sl.stop - sl.start
        for o, g in zip(out, grads):
            o[sl] = g[:k]
        gaps[sl] = scores[:k] - scores[k:]
    return out, gaps


def _attributions(xs: Tensors, bases: Tensors, ms: Tensors, multiply_by_inputs: bool) -> Tensors:
    return tuple((x - b) * m if multiply_by_inputs else m for x, b, m in zip(xs, bases, ms))


@register(view="raw", rank=52)
def deeplift(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
             baseline: Any = 0, multiply_by_inputs: bool = True, batch_size: Optional[int] = None,
             seed: Optional[int] = None, forward_args: object = None) -> Attribution:
    """DeepLIFT with the rescale rule: (x - baseline) times the multipliers that replace each
    nonlinearity's gradient by its finite-difference slope between input and baseline.

    The attributions sum to f(x) - f(baseline) exactly on networks of ReLU-like units and max
    pools (``result.delta`` is the gap per sample; nonzero where smooth activations meet products,
    e.g. squeeze-excitation gates). baseline: a number, a tensor, "blur" or "noise" (as for
    integrated gradients; a tuple with one per input). ``multiply_by_inputs=False`` gives the
    multipliers alone (captum's option). Every activation call counts, modules, functional calls
    and in-place ones alike (captum sees only nn modules, used once)."""
    c = prepare(model, inputs, target, forward_args)
    bases = make_baselines(c.xs, baseline, seed)
    ms, gaps = multipliers(c, c.xs, bases, torch.arange(c.n), batch_size)
    values = _attributions(c.xs, bases, ms, multiply_by_inputs)
    return c.result(values, "deeplift", delta=completeness_gap(_attributions(c.xs, bases, ms, True), gaps))


def distributions(xs: Tensors, baselines: Any, several: bool, seed: Optional[int] = None) -> Tensors:
    """Each input's baseline distribution, [N, B, ...]: from a tensor of B baselines shaped like one
    input (shared by every sample, captum's form), or from a list of baselines as
    ``make_baseline`` takes them (a number, one tensor, "blur", "noise"), B = its length. None
    means the zero input and a blurred copy of each image (uniform noise over its range for an
    input that is not an image). Several inputs take one of these for all, or a tuple with one
    per input."""
    per = (several and isinstance(baselines, tuple) and len(baselines) == len(xs)
           and all(isinstance(s, (list, tuple, torch.Tensor)) for s in baselines))
    specs = baselines if per else (baselines,) * len(xs)
    out = []
    for i, (x, spec) in enumerate(zip(xs, specs)):
        if spec is None:
            spec = (0.0, "blur" if x.dim() == 4 else "noise")
        if isinstance(spec, torch.Tensor) and spec.dim() == x.dim() and spec.shape[1:] == x.shape[1:]:
            dist = spec.to(x).unsqueeze(0).expand(x.shape[0], *spec.shape)
        elif isinstance(spec, (list, tuple)) and len(spec) > 0:
            seeds = [None if seed is None else seed + 100 * i + j for j in range(len(spec))]
            dist = torch.stack([make_baseline(x, s, sd) for s, sd in zip(spec, seeds)], dim=1)
        else:
            raise InputError(f"baselines must be a tensor of baselines shaped like one input [B, "
                             f"{', '.join(map(str, x.shape[1:]))}] or a list of baselines (numbers, tensors, 'blur', "
                             f"'noise'); got {type(spec).__name__}")
        out.append(dist)
    return tuple(out)


@register(view="raw", rank=54)
def deeplift_shap(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
                  baselines: Any = None, multiply_by_inputs: bool = True,
                  batch_size: Optional[int] = None, seed: Optional[int] = None,
                  forward_args: object = None) -> Attribution:
    """DeepLiftShap: DeepLIFT against every baseline of a distribution, averaged (an estimate of
    SHAP values for the distribution as background).

    baselines: a tensor [B, ...] of baselines shaped like one input (captum's form, shared by all
    samples) or a list of baselines as DeepLIFT takes them (default: the zero image and a blurred
    copy of each input; several inputs: one for all, or a tuple with one per input). ``result.delta``: the attributions' sum minus (f(x) - mean f(baselines))."""
    c = prepare(model, inputs, target, forward_args)
    dists = distributions(c.xs, baselines, c.several, seed)
    count = dists[0].shape[1]
    pairs = tuple(x.repeat_interleave(count, dim=0) for x in c.xs)
    bases = tuple(d.reshape(-1, *d.shape[2:]) for d in dists)
    ms, gaps = multipliers(c, pairs, bases, torch.arange(c.n).repeat_interleave(count), batch_size)

    def mean(ts: Tensors) -> Tensors:
        return tuple(t.view(c.n, count, *t.shape[1:]).mean(1) for t in ts)

    values = mean(_attributions(pairs, bases, ms, multiply_by_inputs))
    full = values if multiply_by_inputs else mean(_attributions(pairs, bases, ms, True))
    return c.result(values, "deeplift_shap", delta=completeness_gap(full, gaps.view(c.n, count).mean(1)))
