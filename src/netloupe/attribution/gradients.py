"""Gradient methods: saliency, input x gradient, guided backprop and deconvnet, and the
batched input-gradient engine the other methods build on."""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..errors import NetloupeError
from ..models import LoadedModel, as_loaded, forward
from ..probe import probe
from ..runtime import chunks
from .result import Attribution
from .targets import Target, TargetLike, resolve


def prepare(model, inputs, target: TargetLike) -> Tuple[LoadedModel, torch.Tensor, Target]:
    """The model, its input batch (on its device) and the resolved target."""
    loaded = as_loaded(model)
    x = loaded.inputs(inputs)
    return loaded, x, resolve(loaded.module, x, target)


def input_gradients(module, xs: torch.Tensor, target: Target, rows: Optional[torch.Tensor] = None,
                    rule: Optional[str] = None, batch_size: Optional[int] = None):
    """d score / d input for every row of ``xs`` (row i explains sample ``rows[i]``), in chunks
    of ``batch_size`` rows; returns (gradients, scores)."""
    n = xs.shape[0]
    rows = torch.arange(n) if rows is None else rows
    grads = torch.empty_like(xs)
    scores = torch.empty(n, dtype=xs.dtype, device=xs.device)
    with probe(module, target.layers, rule=rule) as p:
        for sl in chunks(n, batch_size or n):
            xi = xs[sl].detach().requires_grad_(True)
            s = target.score(forward(module, (xi,)), p, rows[sl])
            if not s.requires_grad:
                raise NetloupeError("the target score does not depend on the input; check the target")
            (grads[sl],) = torch.autograd.grad(s.sum(), xi)
            scores[sl] = s.detach()
    return grads, scores


def target_scores(module, xs: torch.Tensor, target: Target, rows: Optional[torch.Tensor] = None,
                  batch_size: Optional[int] = None) -> torch.Tensor:
    """The target score of every row of ``xs`` without gradients, in chunks of ``batch_size``."""
    n = xs.shape[0]
    rows = torch.arange(n) if rows is None else rows
    scores = torch.empty(n, dtype=xs.dtype, device=xs.device)
    with probe(module, target.layers) as p, torch.no_grad():
        for sl in chunks(n, batch_size or n):
            scores[sl] = target.score(forward(module, (xs[sl],)), p, rows[sl])
    return scores


def _gradient(name, model, inputs, target, rule=None, times_input=False, abs=False) -> Attribution:
    loaded, x, t = prepare(model, inputs, target)
    g, _ = input_gradients(loaded.module, x, t, rule=rule)
    v = g * x if times_input else g
    return Attribution(v.abs() if abs else v, name, t.describe(), x.detach(), loaded.preprocess)


def saliency(model, inputs, target: TargetLike = "top", abs: bool = True) -> Attribution:
    """Gradient of the target score with respect to the input (Simonyan et al. 2014); ``abs``
    gives its magnitude. With ``abs=False``, ``.positive()``/``.negative()`` split the signs."""
    return _gradient("saliency", model, inputs, target, abs=abs)


def input_x_gradient(model, inputs, target: TargetLike = "top") -> Attribution:
    """Input times its gradient: a first-order estimate of each pixel's contribution."""
    return _gradient("input_x_gradient", model, inputs, target, times_input=True)


def guided_backprop(model, inputs, target: TargetLike = "top") -> Attribution:
    """Guided backpropagation (Springenberg et al. 2015): through every ReLU, only positive
    gradient passes, and only where the forward input was positive."""
    return _gradient("guided_backprop", model, inputs, target, rule="guided")


def deconvnet(model, inputs, target: TargetLike = "top") -> Attribution:
    """Deconvnet (Zeiler & Fergus 2014): through every ReLU, only positive gradient passes,
    whatever the forward input."""
    return _gradient("deconvnet", model, inputs, target, rule="deconv")
