"""Gradient methods: saliency, input x gradient, guided backprop and deconvnet, and the
batched input-gradient engine the other methods build on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..errors import NetloupeError
from ..models import LoadedModel, ModelLike, as_loaded
from ..probe import probe
from ..runtime import channels_last, chunks
from .inputs import ForwardArgs, MethodInputs, Tensors, model_inputs, unpack
from .registry import register
from .result import Attribution
from .targets import Target, TargetLike, resolve


@dataclass
class Prepared:
    """A method's call, resolved: the model, its input batches (on its device), whether the
    user gave several inputs, the extra forward arguments and the target."""

    loaded: LoadedModel
    xs: Tensors
    several: bool
    extra: ForwardArgs
    target: Target

    @property
    def n(self) -> int:
        return self.xs[0].shape[0]

    def result(self, values: Tensors, method: str, inputs: Optional[Tensors] = None, **kw: Any) -> Attribution:
        """The Attribution of per-input ``values`` (explaining ``inputs``, by default the inputs)."""
        inputs = tuple(x.detach() for x in self.xs) if inputs is None else inputs
        return Attribution(unpack(values, self.several), method, self.target.describe(), unpack(inputs, self.several),
                           self.loaded.preprocess, **kw)


def prepare(model: ModelLike, inputs: MethodInputs, target: TargetLike, forward_args: object = None) -> Prepared:
    """Resolve a method's model, inputs (one, or a tuple of several), forward arguments and target."""
    loaded = as_loaded(model)
    xs, several = model_inputs(loaded, inputs)
    extra = ForwardArgs.of(forward_args, xs[0].shape[0])
    return Prepared(loaded, xs, several, extra, resolve(loaded.module, xs, target, extra))


def input_gradients(module: nn.Module, xs: Tensors, target: Target, rows: Optional[torch.Tensor] = None,
                    rule: Optional[str] = None, batch_size: Optional[int] = None,
                    extra: ForwardArgs = ForwardArgs()) -> Tuple[Tensors, torch.Tensor]:
    """d score / d input for every row of the inputs ``xs`` (row i explains sample ``rows[i]``,
    whose forward arguments in ``extra`` it takes), in chunks of ``batch_size`` rows; returns
    (one gradient per input, scores). An input the score does not depend on gets zeros."""
    n = xs[0].shape[0]
    rows = torch.arange(n) if rows is None else rows
    grads = tuple(torch.zeros_like(x) for x in xs)
    scores = torch.empty(n, dtype=xs[0].dtype, device=xs[0].device)
    with probe(module, target.layers, rule=rule) as p:
        for sl in chunks(n, batch_size or n):
            def run(chunk: Tensors, sl: slice = sl) -> Tuple[torch.Tensor, Tuple[Optional[torch.Tensor], ...]]:
                xi = tuple(x.detach().requires_grad_(True) for x in chunk)
                s = target.score(extra.take(rows[sl]).call(module, xi), p, rows[sl])
                gs = torch.autograd.grad(s.sum(), xi, allow_unused=True) if s.requires_grad else (None,) * len(xi)
                return s, gs

            s, gs = channels_last(module, run, tuple(x[sl] for x in xs))
            if all(g is None for g in gs):
                raise NetloupeError("the target score does not depend on the input; check the target")
            for g, out in zip(gs, grads):
                if g is not None:
                    out[sl] = g
            scores[sl] = s.detach()
    return grads, scores


def target_scores(module: nn.Module, xs: Sequence[torch.Tensor], target: Target, rows: Optional[torch.Tensor] = None,
                  batch_size: Optional[int] = None, extra: ForwardArgs = ForwardArgs()) -> torch.Tensor:
    """The target score of every row of the inputs ``xs`` without gradients, in chunks of ``batch_size``."""
    n = xs[0].shape[0]
    rows = torch.arange(n) if rows is None else rows
    scores = torch.empty(n, dtype=xs[0].dtype, device=xs[0].device)
    with probe(module, target.layers) as p, torch.no_grad():
        for sl in chunks(n, batch_size or n):
            def run(chunk: Tensors, sl: slice = sl) -> torch.Tensor:
                return target.score(extra.take(rows[sl]).call(module, list(chunk)), p, rows[sl])

            scores[sl] = channels_last(module, run, tuple(x[sl] for x in xs))
    return scores


def _gradient(name: str, model: ModelLike, inputs: MethodInputs, target: TargetLike, forward_args: object,
              rule: Optional[str] = None, times_input: bool = False, abs: bool = False) -> Attribution:
    c = prepare(model, inputs, target, forward_args)
    grads, _ = input_gradients(c.loaded.module, c.xs, c.target, rule=rule, extra=c.extra)
    values = tuple(g * x if times_input else g for g, x in zip(grads, c.xs))
    return c.result(tuple(v.abs() for v in values) if abs else values, name)


@register(rank=10)
def saliency(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *, abs: bool = True,
             forward_args: object = None) -> Attribution:
    """Gradient of the target score with respect to the input (Simonyan et al. 2014); ``abs``
    gives its magnitude. With ``abs=False``, ``.positive()``/``.negative()`` split the signs.

    Every method takes ``inputs`` as one input (images or a batch tensor) or a tuple with one
    batch per model input (then ``values`` is a tuple too), and ``forward_args``: extra
    arguments of the model's forward after the inputs (a tuple, a dict of keywords, or one
    value), passed unchanged; a tensor in them whose first dimension is the batch size follows
    its sample when a method re-batches."""
    return _gradient("saliency", model, inputs, target, forward_args, abs=abs)


@register(rank=20)
def input_x_gradient(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
                     forward_args: object = None) -> Attribution:
    """Input times its gradient: a first-order estimate of each pixel's contribution."""
    return _gradient("input_x_gradient", model, inputs, target, forward_args, times_input=True)


@register(view="raw", rank=30)
def guided_backprop(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
                    forward_args: object = None) -> Attribution:
    """Guided backpropagation (Springenberg et al. 2015): through every ReLU, only positive
    gradient passes, and only where the forward input was positive."""
    return _gradient("guided_backprop", model, inputs, target, forward_args, rule="guided")


@register(view="raw", caption="deconvnet (ignores image and class)", rank=40)
def deconvnet(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
              forward_args: object = None) -> Attribution:
    """Deconvnet (Zeiler & Fergus 2014): through every ReLU, only positive gradient passes,
    whatever the forward input."""
    return _gradient("deconvnet", model, inputs, target, forward_args, rule="deconv")
