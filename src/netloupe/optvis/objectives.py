"""Objectives: what a rendering maximizes, one value per batch element.

An objective reads captured activations and model outputs from a :class:`Context` and returns
a [batch] tensor. Objectives combine with ``+ - * /`` (with numbers or each other), so
``channel("blocks.4", 3) - 1e-3 * total_variation()`` is an objective too. Each takes
``index=i`` to act on element i only (every other element gets exactly zero from it) and
``model=`` to read a particular model when several shape one image.

A new objective is one function under the :func:`objective` decorator, as lucent's
``wrap_objective``: it takes its layer (or layers) and settings and returns a function of the
Context; the decorator works out which activations to capture from the layer argument and adds
``model=``, ``index=`` and a name.
"""

from __future__ import annotations

import functools
import inspect
import operator
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union, cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

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

    def of(self, model: ModelRef | None) -> "Context":
        """This context with ``model`` (None: the first) as the one read when no model is named."""
        if model is None:
            return self
        return Context(self.images, self._activations, self._outputs, _module(model), self._probes)

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


def _arithmetic(op: Callable[[Any, Any], Any], symbol: str, reflected: bool = False
                ) -> Callable[["Objective", "Objective | float"], "Objective"]:
    """An arithmetic operator of objectives (``a + b``, ``2 * a``, ...), with numbers or each other."""
    def apply(self: Objective, other: Objective | float) -> Objective:
        return self._combine(other, op, symbol, reflected)
    return apply


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

    __add__ = _arithmetic(operator.add, "+")
    __radd__ = _arithmetic(operator.add, "+", reflected=True)
    __sub__ = _arithmetic(operator.sub, "-")
    __rsub__ = _arithmetic(operator.sub, "-", reflected=True)
    __mul__ = _arithmetic(operator.mul, "*")
    __rmul__ = _arithmetic(operator.mul, "*", reflected=True)
    __truediv__ = _arithmetic(operator.truediv, "/")
    __rtruediv__ = _arithmetic(operator.truediv, "/", reflected=True)

    def __neg__(self) -> Objective:
        return Objective(lambda ctx: -self(ctx), f"-{self.name}", self.needs)

    def on(self, index: int) -> Objective:
        """This objective on batch element ``index`` only (every other element gets exactly zero)."""
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise NetloupeError(f"index= takes an element index >= 0; got {index!r}")

        def only(ctx: Context) -> torch.Tensor:
            if index >= ctx.n:
                raise NetloupeError(f"objective {self.name} is for image {index}, but only {ctx.n} are optimized; "
                                    f"use a param with n > {index}")
            value = self(ctx)
            mask = torch.zeros(ctx.n, dtype=value.dtype, device=value.device)
            mask[index] = 1
            return value * mask
        return Objective(only, f"{self.name}[index={index}]", self.needs)


READS = ("layers", "output", "images")


def objective(fn: Optional[Callable[..., Callable[[Context], Value]]] = None, *, reads: Optional[str] = None
              ) -> Any:
    """Make an objective factory from ``fn(...) -> (Context -> value per element)``.

    What it reads (``reads``) follows from its parameters unless given: a parameter ``layer`` (a
    name or module) or ``layers`` (several) names the activations the render loop must capture;
    without one, the objective reads the model output ("output"); "images" reads only the
    parameterized images (a prior such as total variation, which runs no model). The factory takes
    ``fn``'s arguments plus ``model=`` (which model's activations and output the function sees, when
    several shape one image) and ``index=`` (act on that batch element only); the objective is
    named after the call. Use it bare (``@objective``) or with ``reads=``."""
    if fn is None:
        return functools.partial(objective, reads=reads)
    if reads is not None and reads not in READS:
        raise NetloupeError(f"reads must be one of {', '.join(READS)}; got {reads!r}")
    signature = inspect.signature(fn)
    layer_arg = next((n for n in ("layer", "layers") if n in signature.parameters), None)
    what = reads or ("layers" if layer_arg else "output")
    if what == "layers" and layer_arg is None:
        raise NetloupeError(f"objective {fn.__name__} reads layers but has no parameter 'layer' or 'layers'")

    @functools.wraps(fn)
    def make(*args: Any, model: ModelRef | None = None, index: Optional[int] = None, **kw: Any) -> Objective:
        bound = signature.bind(*args, **kw)
        bound.apply_defaults()
        inner = fn(*bound.args, **bound.kwargs)
        needs: List[Need] = []
        if what == "layers":
            given = bound.arguments[cast(str, layer_arg)]
            needs = [(model, read) for read in (given if layer_arg == "layers" else [given])]
        elif what == "output":
            needs = [(model, OUTPUT)]
        shown = ", ".join(_label(v) for k, v in bound.arguments.items()  # what was given, tensors left out
                          if not isinstance(v, (torch.Tensor, np.ndarray)) and v is not signature.parameters[k].default)
        made = Objective(lambda ctx: inner(ctx.of(model)), f"{fn.__name__}({shown})", needs)
        return made if index is None else made.on(index)

    params = [*signature.parameters.values(),
              inspect.Parameter("model", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="ModelRef | None"),
              inspect.Parameter("index", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="Optional[int]")]
    make.__signature__ = signature.replace(parameters=params, return_annotation="Objective")  # type: ignore[attr-defined]
    return make


def _per_element_mean(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).mean(1) if t.dim() > 1 else t


def _label(value: Any) -> str:
    if isinstance(value, nn.Module):
        return type(value).__name__
    return value if isinstance(value, str) else repr(value)


@objective
def channel(layer: LayerRef, channel: int) -> Callable[[Context], Value]:
    """Mean activation of ``channel`` of ``layer`` (over all positions)."""
    unit = Unit(_label(layer), channel)
    return lambda ctx: unit.value(ctx.activation(layer), ctx.layout(layer))


@objective
def neuron(layer: LayerRef, channel: int, y: Optional[int] = None, x: Optional[int] = None
           ) -> Callable[[Context], Value]:
    """Activation of ``channel`` at one position (the centre unless y, x are given)."""
    def fn(ctx: Context) -> torch.Tensor:
        t, layout = ctx.activation(layer), ctx.layout(layer)
        grid = layout.spatial(t.shape)
        if grid is None:  # a vector layer: its "neuron" is the channel itself
            if layout.kind != "vector":
                raise UnitError(f"neuron needs a layer with a spatial grid; {_label(layer)!r} gives {tuple(t.shape)} "
                                f"(layout {layout})")
            return Unit(_label(layer), channel).value(t, layout)
        h, w = grid
        return Unit(_label(layer), channel, h // 2 if y is None else y, w // 2 if x is None else x).value(t, layout)
    return fn


@objective
def layer(layer: LayerRef) -> Callable[[Context], Value]:
    """Mean activation of a whole layer."""
    return lambda ctx: _per_element_mean(ctx.activation(layer))


@objective
def deepdream(layer: LayerRef) -> Callable[[Context], Value]:
    """Mean squared activation of a layer (DeepDream)."""
    return lambda ctx: _per_element_mean(ctx.activation(layer) ** 2)


@objective
def direction(layer: LayerRef, vector: torch.Tensor | np.ndarray | Sequence[Any], cossim_pow: float = 0
              ) -> Callable[[Context], Value]:
    """Mean over positions of the dot product of the channel vector with ``vector``; with
    ``cossim_pow`` > 0 the dot product is weighted by max(cosine similarity, 0.1) ** cossim_pow
    (Lucid's direction), which favours the direction over sheer magnitude. The floor keeps the
    sign of the dot product: a negative cosine cannot turn a negative dot product positive.

    ``vector`` of one element's whole output shape (a photo's activations) is one direction in
    that space: the dot product over all of it, weighted by the cosine of the whole (Lucid's
    caricature)."""
    vec = torch.as_tensor(vector, dtype=torch.float32)

    def fn(ctx: Context) -> torch.Tensor:
        a = ctx.activation(layer)
        if vec.dim() > 1 and tuple(vec.shape) == tuple(a.shape[1:]):
            t, v = a.flatten(1), vec.to(a.device, a.dtype).flatten()[None]  # [N, all], one position
        else:
            t = ctx.layout(layer).positions(a) if a.dim() > 2 else a  # [N, C, positions] or [N, C]
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
    return fn


@objective
def match(layer: LayerRef, target: torch.Tensor | np.ndarray | Sequence[Any]) -> Callable[[Context], Value]:
    """Minus the relative distance ||a - target|| / ||target|| of the layer's output from
    ``target`` (one element's output shape): 0 at a perfect match. Maximizing it inverts the
    layer (Mahendran & Vedaldi 2015)."""
    want = torch.as_tensor(target, dtype=torch.float32)

    def fn(ctx: Context) -> torch.Tensor:
        a = ctx.activation(layer)
        if tuple(a.shape[1:]) != tuple(want.shape):
            raise NetloupeError(f"match's target has shape {tuple(want.shape)} but layer {_label(layer)!r} gives "
                                f"{tuple(a.shape[1:])} per element; give the target at the size the image is seen")
        w = want.to(a.device, a.dtype)[None]
        return -(a - w).flatten(1).norm(dim=1) / (w.norm() + 1e-12)
    return fn


@objective
def diversity(layer: LayerRef) -> Callable[[Context], Value]:
    """Lucid's diversity: minus the cosine similarity of each element's flattened Gram matrix
    with every other element's, divided by the batch size (summed over elements it equals Lucid's)."""
    def fn(ctx: Context) -> torch.Tensor:
        t = ctx.activation(layer)
        if t.dim() < 3:
            raise NetloupeError(f"diversity needs a layer with spatial or token outputs; {layer!r} gives {tuple(t.shape)}")
        f = ctx.layout(layer).positions(t)  # [B, C, positions]
        grams = F.normalize(torch.bmm(f, f.transpose(1, 2)).flatten(1), dim=1, eps=1e-10)
        sim = grams @ grams.T
        return -(sim.sum(1) - sim.diagonal()) / t.shape[0]
    return fn


@objective(reads="images")
def total_variation() -> Callable[[Context], Value]:
    """Sum of absolute differences between neighbouring pixels of the image (subtract it to smooth)."""
    def fn(ctx: Context) -> torch.Tensor:
        x = ctx.images
        return (x[:, :, 1:] - x[:, :, :-1]).abs().flatten(1).sum(1) + (x[..., 1:] - x[..., :-1]).abs().flatten(1).sum(1)
    return fn


@objective(reads="images")
def l2(constant: float = 0.0, epsilon: float = 1e-6) -> Callable[[Context], Value]:
    """Euclidean distance of the image from ``constant`` (subtract it to keep pixels near it)."""
    return lambda ctx: ((ctx.images - constant) ** 2).flatten(1).sum(1).add(epsilon).sqrt()


@objective(reads="images")
def alpha_norm(alpha: float = 6.0) -> Callable[[Context], Value]:
    """Mean over pixels of |2x - 1| ** alpha: 0 for a grey image, 1 for one all black and white.
    Subtract it to keep pixels away from the ends of their range (Mahendran & Vedaldi's range
    prior, for images in [0, 1])."""
    return lambda ctx: ((2 * ctx.images - 1).abs() ** alpha).flatten(1).mean(1)


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.full((3, 3), 0.5, dtype=x.dtype, device=x.device)
    k[1, 1] = 1.0
    k = k.expand(x.shape[1], 1, 3, 3)
    conv = lambda t: F.conv2d(t, k, padding=1, groups=x.shape[1])  # noqa: E731
    return conv(x) / conv(torch.ones_like(x))


@objective(reads="images")
def blur() -> Callable[[Context], Value]:
    """Half the squared distance of the image from a blurred copy of itself (held fixed):
    subtracting it acts like blurring the image a little at each step (Lucid's blur_input_each_step)."""
    return lambda ctx: 0.5 * ((ctx.images - _blur(ctx.images).detach()) ** 2).flatten(1).sum(1)


def main_output(out: Any) -> torch.Tensor:
    """The tensor of a model output: itself, else the first tensor in a dict, tuple or list
    (``out["out"]`` for torchvision's segmentation models)."""
    t, _ = first_tensor(out)
    if t is None:
        raise NetloupeError(f"cannot find a tensor in the model output ({type(out).__name__}); use output(fn) "
                            "with a function that picks it")
    return t


@objective
def output(fn: Callable[[Any], Value]) -> Callable[[Context], Value]:
    """Any function of the model output (the raw output: a tensor, dict or tuple) giving one value per element."""
    return lambda ctx: fn(ctx.output())


@objective
def class_logit(class_index: int) -> Callable[[Context], Value]:
    """The logit of class ``class_index`` (before softmax, as Lucid recommends)."""
    def fn(ctx: Context) -> torch.Tensor:
        t = main_output(ctx.output())
        if t.dim() != 2 or not 0 <= class_index < t.shape[1]:
            raise UnitError(f"class {class_index} out of range for a model output of shape {tuple(t.shape)}")
        return t[:, class_index]
    return fn


@objective
def segmentation_class(class_index: int) -> Callable[[Context], Value]:
    """The mean of class ``class_index``'s score map in a segmentation output [N, classes, H, W]."""
    def fn(ctx: Context) -> torch.Tensor:
        t = main_output(ctx.output())
        if t.dim() != 4 or not 0 <= class_index < t.shape[1]:
            raise UnitError(f"segmentation_class({class_index}) needs an output [N, classes, H, W] with class "
                            f"{class_index}; got shape {tuple(t.shape)}")
        return _per_element_mean(t[:, class_index])
    return fn


def from_unit(unit: Union[str, Unit], model: ModelRef | None = None, index: Optional[int] = None) -> Objective:
    """The objective a unit string names: ``layer`` its mean, ``layer:c`` channel c, ``layer:c@y,x`` a neuron."""
    u = Unit.parse(unit)
    if u.channel is None:
        return layer(u.layer, model=model, index=index)
    if u.y is None:
        return channel(u.layer, u.channel, model=model, index=index)
    return neuron(u.layer, u.channel, u.y, u.x, model=model, index=index)


def as_objective(obj: Objective | str | Unit) -> Objective:
    """An Objective as is; a unit string as :func:`from_unit`."""
    if isinstance(obj, Objective):
        return obj
    if isinstance(obj, (str, Unit)):
        return from_unit(obj)
    raise NetloupeError(f"expected an objective (netloupe.optvis.objectives) or a unit string; got {type(obj).__name__}")
