"""Gradient methods: saliency, input x gradient, guided backprop and deconvnet."""

from __future__ import annotations

from typing import Optional

from .engine import Attribution, MethodInputs, ModelLike, TargetLike, input_gradients, prepare
from .registry import register


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
