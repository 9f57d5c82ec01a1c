"""Objectives: what a rendering maximizes, one value per batch element.

An objective reads captured activations and model outputs from a :class:`Context` and returns
a [batch] tensor. Objectives combine with ``+ - * /`` (with numbers or each other), so
``channel("blocks.4", 3) - 1e-3 * total_variation()`` is an objective too. Each takes
``index=i`` to act on element i only (every other element gets exactly zero from it) and
``model=`` to read a particular model when several shape one image.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..deprecation import renamed
from ..errors import NetloupeError, UnitError
from ..layouts import Layout, guess
from ..outputs import first_tensor
from ..units import Unit

if TYPE_CHECKING:
    from ..models import LoadedModel
    from ..probe import Probe

OUTPUT = None  # the "layer" that stands for a model's output in Objective.needs

LayerRef = Union[str, nn.Module]  # a layer: its name in the model, or the module itself
ModelRef = Union[nn.Module, "LoadedModel"]  # what model= takes
Need = Tuple[Optional[ModelRef], Optional[LayerRef]]  # (model or None, layer or OUTPUT)
Value = Union[torch.Tensor, float]  # what an objective's function gives: [batch], or one number for all


class Context:
    """What objectives see during one step: the parameterized images (before transforms), and per
    model the captured activations, the output and (through its probe) each layer's layout."""

    def __init__(self, images: torch.Tensor, activations: Dict[nn.Module, Dict[str, torch.Tensor]],
                 outputs: Dict[nn.Module, Any], default: nn.Module,
                 probes: Optional[Dict[nn.Module, Probe]] = None) -> None:
        self.images = images
        self._activations, self._outputs, self._default = activations, outputs, default
        self._probes = probes or {}

    @property
    def n(self) -> int:
        """How many images are optimized together."""
        return self.images.shape[0]

    def _key(self, model: ModelRef | None) -> nn.Module:
        return self._default if model is None else _module(model)

    def activation(self, layer: LayerRef, model: ModelRef | None = None) -> torch.Tensor:
        acts = self._activations.get(self._key(model), {})
        name = layer if isinstance(layer, str) else _layer_name(self._key(model), layer)
        if name not in acts:
            raise NetloupeError(f"layer {name!r} was not captured in this forward pass; objectives name "
                                "their layers so that render can capture them")
        return acts[name]

    def output(self, model: ModelRef | None = None) -> Any:
        return self._outputs[self._key(model)]

    def layout(self, layer: LayerRef, model: ModelRef | None = None) -> Layout:
        """Where ``layer``'s output keeps its channels and grid (netloupe.layouts)."""
        t = self.activation(layer, model)
        p = self._probes.get(self._key(model))
        name = layer if isinstance(layer, str) else _layer_name(self._key(model), layer)
        return p.layout(name, t.shape) if p is not None else guess(t.shape)


def _module(model: ModelRef) -> nn.Module:
    module = getattr(model, "module", model)
    if not isinstance(module, nn.Module):
        raise NetloupeError(f"model= takes an nn.Module or a LoadedModel; got {type(model).__name__}")
    return module


def _layer_name(module: nn.Module, layer: LayerRef) -> str:
    from ..units import as_unit

    return as_unit(module, layer).layer


class Objective:
    """A function of a :class:`Context` giving one value per batch element, to be maximized.

    needs: (model or None, layer or OUTPUT) pairs that the render loop must capture.
    """

    def __init__(self, fn: Callable[[Context], Value], name: str, needs: Sequence[Need] = ()) -> None:
        self.fn, self.name, self.needs = fn, name, tuple(needs)

    def __call__(self, ctx: Context) -> torch.Tensor:
        value = self.fn(ctx)
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value, dtype=ctx.images.dtype, device=ctx.images.device)
        return value.expand(ctx.n) if value.dim() == 0 else value

    def __repr__(self) -> str:
        return self.name

    def _combine(self, other: Objective | float, op: Callable[[Any, Any], Any], symbol: str,
                 reflected: bool = False) -> Objective:
        right: Callable[[Context], Value]
        if isinstance(other, Objective):
            right, right_name, needs = other, other.name, self.needs + other.needs
        elif isinstance(other, (int, float)):
            right, right_name, needs = (lambda ctx: other), repr(other), self.needs
        else:
            return NotImplemented
        a, b = (right, self) if reflected else (self, right)
        names = (right_name, self.name) if reflected else (self.name, right_name)
        return Objective(lambda ctx: op(a(ctx), b(ctx)), f"({names[0]} {symbol} {names[1]})", needs)

    def __add__(self, other: Objective | float) -> Objective:
        return self._combine(other, operator.add, "+")

    def __radd__(self, other: Objective | float) -> Objective:
        return self._combine(other, operator.add, "+", reflected=True)

    def __sub__(self, other: Objective | float) -> Objective:
        return self._combine(other, operator.sub, "-")

    def __rsub__(self, other: Objective | float) -> Objective:
        return self._combine(other, operator.sub, "-", reflected=True)

    def __mul__(self, other: Objective | float) -> Objective:
        return self._combine(other, operator.mul, "*")

    def __rmul__(self, other: Objective | float) -> Objective:
        return self._combine(other, operator.mul, "*", reflected=True)

    def __truediv__(self, other: Objective | float) -> Objective:
        return self._combine(other, operator.truediv, "/")

    def __rtruediv__(self, other: Objective | float) -> Objective:
        return self._combine(other, operator.truediv, "/", reflected=True)

    def __neg__(self) -> Objective:
        return Objective(lambda ctx: -self(ctx), f"-{self.name}", self.needs)


def _make(fn: Callable[[Context], Value], name: str, needs: Sequence[Need], index: Optional[int]) -> Objective:
    """An objective, restricted to element ``index`` when given (others get exactly zero)."""
    if index is None:
        return Objective(fn, name, needs)
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise NetloupeError(f"index= takes an element index >= 0; got {index!r}")

    def only(ctx: Context) -> torch.Tensor:
        if index >= ctx.n:
            raise NetloupeError(f"objective {name} is for image {index}, but only {ctx.n} are optimized; use a "
                                f"param with n > {index}")
        value = Objective(fn, name)(ctx)
        mask = torch.zeros(ctx.n, dtype=value.dtype, device=value.device)
        mask[index] = 1
        return value * mask
    return Objective(only, f"{name}[index={index}]", needs)


def _per_element_mean(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).mean(1) if t.dim() > 1 else t


def _label(layer: LayerRef) -> str:
    return layer if isinstance(layer, str) else type(layer).__name__


@renamed(n="channel", batch="index")
def channel(layer: LayerRef, channel: int, model: ModelRef | None = None, index: Optional[int] = None) -> Objective:
    """Mean activation of ``channel`` of ``layer`` (over all positions)."""
    unit = Unit(_label(layer), channel)
    return _make(lambda ctx: unit.value(ctx.activation(layer, model), ctx.layout(layer, model)), f"channel({unit})",
                 [(model, layer)], index)


@renamed(n="channel", batch="index")
def neuron(layer: LayerRef, channel: int, y: Optional[int] = None, x: Optional[int] = None,
           model: ModelRef | None = None, index: Optional[int] = None) -> Objective:
    """Activation of ``channel`` at one position (the centre unless y, x are given)."""
    def fn(ctx: Context) -> torch.Tensor:
        t, layout = ctx.activation(layer, model), ctx.layout(layer, model)
        grid = layout.spatial(t.shape)
        if grid is None:  # a vector layer: its "neuron" is the channel itself
            if layout.kind != "vector":
                raise UnitError(f"neuron needs a layer with a spatial grid; {_label(layer)!r} gives {tuple(t.shape)} "
                                f"(layout {layout})")
            return Unit(_label(layer), channel).value(t, layout)
        h, w = grid
        return Unit(_label(layer), channel, h // 2 if y is None else y, w // 2 if x is None else x).value(t, layout)
    where = "" if y is None else f"@{y},{x}"
    return _make(fn, f"neuron({_label(layer)}:{channel}{where})", [(model, layer)], index)


@renamed(batch="index")
def layer(layer: LayerRef, model: ModelRef | None = None, index: Optional[int] = None) -> Objective:
    """Mean activation of a whole layer."""
    return _make(lambda ctx: _per_element_mean(ctx.activation(layer, model)), f"layer({_label(layer)})",
                 [(model, layer)], index)


@renamed(batch="index")
def deepdream(layer: LayerRef, model: ModelRef | None = None, index: Optional[int] = None) -> Objective:
    """Mean squared activation of a layer (DeepDream)."""
    return _make(lambda ctx: _per_element_mean(ctx.activation(layer, model) ** 2), f"deepdream({_label(layer)})",
                 [(model, layer)], index)


@renamed(batch="index")
def direction(layer: LayerRef, vector: torch.Tensor | np.ndarray | Sequence[Any], cossim_pow: float = 0,
              model: ModelRef | None = None, index: Optional[int] = None) -> Objective:
    """Mean over positions of the dot product of the channel vector with ``vector``; with
    ``cossim_pow`` > 0 the dot product is weighted by max(cosine similarity, 0.1) ** cossim_pow
    (Lucid's direction), which favours the direction over sheer magnitude. The floor keeps the
    sign of the dot product: a negative cosine cannot turn a negative dot product positive.

    ``vector`` of one element's whole output shape (a photo's activations) is one direction in
    that space: the dot product over all of it, weighted by the cosine of the whole (Lucid's
    caricature)."""
    vec = torch.as_tensor(vector, dtype=torch.float32)

    def fn(ctx: Context) -> torch.Tensor:
        a = ctx.activation(layer, model)
        if vec.dim() > 1 and tuple(vec.shape) == tuple(a.shape[1:]):
            t, v = a.flatten(1), vec.to(a.device, a.dtype).flatten()[None]  # [N, all], one position
        else:
            t = ctx.layout(layer, model).positions(a) if a.dim() > 2 else a  # [N, C, positions] or [N, C]
            if t.shape[1] != vec.numel():
                raise NetloupeError(f"direction has {vec.numel()} components but layer {layer!r} has output shape "
                                    f"{tuple(a.shape)} with {t.shape[1]} channels; give one component per channel "
                                    "(or a tensor of one element's output shape)")
            v = vec.to(t.device, t.dtype).view(1, -1, *([1] * (t.dim() - 2)))
        dot = (t * v).sum(1)
        if cossim_pow:
            cos = dot / (t.norm(dim=1) * v.norm() + 1e-8)
            dot = dot * cos.clamp(min=0.1) ** cossim_pow
        return _per_element_mean(dot)
    return _make(fn, f"direction({_label(layer)})", [(model, layer)], index)


def match(layer: LayerRef, target: torch.Tensor | np.ndarray | Sequence[Any], model: ModelRef | None = None,
          index: Optional[int] = None) -> Objective:
    """Minus the relative distance ||a - target|| / ||target|| of the layer's output from
    ``target`` (one element's output shape): 0 at a perfect match. Maximizing it inverts the
    layer (Mahendran & Vedaldi 2015)."""
    want = torch.as_tensor(target, dtype=torch.float32)

    def fn(ctx: Context) -> torch.Tensor:
        a = ctx.activation(layer, model)
        if tuple(a.shape[1:]) != tuple(want.shape):
            raise NetloupeError(f"match's target has shape {tuple(want.shape)} but layer {_label(layer)!r} gives "
                                f"{tuple(a.shape[1:])} per element; give the target at the size the image is seen")
        w = want.to(a.device, a.dtype)[None]
        return -(a - w).flatten(1).norm(dim=1) / (w.norm() + 1e-12)
    return _make(fn, f"match({_label(layer)})", [(model, layer)], index)


@renamed(batch="index")
def diversity(layer: LayerRef, model: ModelRef | None = None, index: Optional[int] = None) -> Objective:
    """Lucid's diversity: minus the cosine similarity of each element's flattened Gram matrix
    with every other element's, divided by the batch size (summed over elements it equals Lucid's)."""
    def fn(ctx: Context) -> torch.Tensor:
        t = ctx.activation(layer, model)
        if t.dim() < 3:
            raise NetloupeError(f"diversity needs a layer with spatial or token outputs; {layer!r} gives {tuple(t.shape)}")
        f = ctx.layout(layer, model).positions(t)  # [B, C, positions]
        grams = F.normalize(torch.bmm(f, f.transpose(1, 2)).flatten(1), dim=1, eps=1e-10)
        sim = grams @ grams.T
        return -(sim.sum(1) - sim.diagonal()) / t.shape[0]
    return _make(fn, f"diversity({_label(layer)})", [(model, layer)], index)


@renamed(batch="index")
def total_variation(index: Optional[int] = None) -> Objective:
    """Sum of absolute differences between neighbouring pixels of the image (subtract it to smooth)."""
    def fn(ctx: Context) -> torch.Tensor:
        x = ctx.images
        return (x[:, :, 1:] - x[:, :, :-1]).abs().flatten(1).sum(1) + (x[..., 1:] - x[..., :-1]).abs().flatten(1).sum(1)
    return _make(fn, "total_variation()", [], index)


@renamed(batch="index")
def l2(constant: float = 0.0, epsilon: float = 1e-6, index: Optional[int] = None) -> Objective:
    """Euclidean distance of the image from ``constant`` (subtract it to keep pixels near it)."""
    return _make(lambda ctx: ((ctx.images - constant) ** 2).flatten(1).sum(1).add(epsilon).sqrt(), "l2()", [], index)


def alpha_norm(alpha: float = 6.0, index: Optional[int] = None) -> Objective:
    """Mean over pixels of |2x - 1| ** alpha: 0 for a grey image, 1 for one all black and white.
    Subtract it to keep pixels away from the ends of their range (Mahendran & Vedaldi's range
    prior, for images in [0, 1])."""
    return _make(lambda ctx: ((2 * ctx.images - 1).abs() ** alpha).flatten(1).mean(1), f"alpha_norm({alpha})", [],
                 index)


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.full((3, 3), 0.5, dtype=x.dtype, device=x.device)
    k[1, 1] = 1.0
    k = k.expand(x.shape[1], 1, 3, 3)
    conv = lambda t: F.conv2d(t, k, padding=1, groups=x.shape[1])  # noqa: E731
    return conv(x) / conv(torch.ones_like(x))


@renamed(batch="index")
def blur(index: Optional[int] = None) -> Objective:
    """Half the squared distance of the image from a blurred copy of itself (held fixed):
    subtracting it acts like blurring the image a little at each step (Lucid's blur_input_each_step)."""
    def fn(ctx: Context) -> torch.Tensor:
        x = ctx.images
        return 0.5 * ((x - _blur(x).detach()) ** 2).flatten(1).sum(1)
    return _make(fn, "blur()", [], index)


def main_output(out: Any) -> torch.Tensor:
    """The tensor of a model output: itself, else the first tensor in a dict, tuple or list
    (``out["out"]`` for torchvision's segmentation models)."""
    t, _ = first_tensor(out)
    if t is None:
        raise NetloupeError(f"cannot find a tensor in the model output ({type(out).__name__}); use output(fn) "
                            "with a function that picks it")
    return t


@renamed(batch="index")
def output(fn: Callable[[Any], Value], model: ModelRef | None = None, index: Optional[int] = None,
           name: Optional[str] = None) -> Objective:
    """Any function of the model output (the raw output: a tensor, dict or tuple) giving one value per element."""
    label = name or f"output({getattr(fn, '__name__', 'fn')})"
    return _make(lambda ctx: fn(ctx.output(model)), label, [(model, OUTPUT)], index)


@renamed(n="class_index", batch="index")
def class_logit(class_index: int, model: ModelRef | None = None, index: Optional[int] = None) -> Objective:
    """The logit of class ``class_index`` (before softmax, as Lucid recommends)."""
    def fn(out: Any) -> torch.Tensor:
        t = main_output(out)
        if t.dim() != 2 or not 0 <= class_index < t.shape[1]:
            raise UnitError(f"class {class_index} out of range for a model output of shape {tuple(t.shape)}")
        return t[:, class_index]
    return output(fn, model, index, name=f"class_logit({class_index})")


@renamed(n="class_index", batch="index")
def segmentation_class(class_index: int, model: ModelRef | None = None, index: Optional[int] = None) -> Objective:
    """The mean of class ``class_index``'s score map in a segmentation output [N, classes, H, W]."""
    def fn(out: Any) -> torch.Tensor:
        t = main_output(out)
        if t.dim() != 4 or not 0 <= class_index < t.shape[1]:
            raise UnitError(f"segmentation_class({class_index}) needs an output [N, classes, H, W] with class "
                            f"{class_index}; got shape {tuple(t.shape)}")
        return _per_element_mean(t[:, class_index])
    return output(fn, model, index, name=f"segmentation_class({class_index})")


@renamed(batch="index")
def from_unit(unit: Union[str, Unit], model: ModelRef | None = None, index: Optional[int] = None) -> Objective:
    """The objective a unit string names: ``layer`` its mean, ``layer:c`` channel c, ``layer:c@y,x`` a neuron."""
    u = Unit.parse(unit)
    if u.channel is None:
        return layer(u.layer, model, index)
    if u.y is None:
        return channel(u.layer, u.channel, model, index)
    return neuron(u.layer, u.channel, u.y, u.x, model, index)


def as_objective(obj: Objective | str | Unit) -> Objective:
    """An Objective as is; a unit string as :func:`from_unit`."""
    if isinstance(obj, Objective):
        return obj
    if isinstance(obj, (str, Unit)):
        return from_unit(obj)
    raise NetloupeError(f"expected an objective (netloupe.optvis.objectives) or a unit string; got {type(obj).__name__}")
