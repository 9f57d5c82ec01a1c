"""Class activation maps: Grad-CAM (Selvaraju et al. 2017), Grad-CAM++ (Chattopadhay et al.
2018) and guided Grad-CAM, for CNNs and vision transformers."""

from __future__ import annotations

import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError, NetloupeError
from ..layouts import overrides
from ..models import ModelLike
from ..probe import probe
from ..units import UnitLike, as_unit, check_channel
from .gradients import Prepared, guided_backprop, prepare
from .inputs import ForwardArgs, MethodInputs, Tensors
from .registry import register
from .result import Attribution
from .targets import TargetLike

INTERPOLATIONS = ("bilinear", "nearest")
#: maps a layer's output to [N, C, h, w] by hand, for a layout netloupe cannot read
Reshape = Callable[[torch.Tensor], torch.Tensor]


_FOUND: "weakref.WeakKeyDictionary[torch.nn.Module, Dict[Tuple[Any, ...], str]]" = weakref.WeakKeyDictionary()


def default_layer(module: nn.Module, xs: Tensors, extra: ForwardArgs = ForwardArgs(), layer_input: bool = False) -> str:
    """``find_default_layer``, found once per model, input shape and layout overrides: finding it
    takes a forward pass of its own, and the explorer asks on every frame. The model is held
    weakly, and a change to its modules (a replaced or added layer) is a new key."""
    key = (layer_input, tuple(tuple(x.shape[1:]) for x in xs), tuple(sorted(overrides(module).items())),
           tuple((n, type(m)) for n, m in module.named_modules()))
    found = _FOUND.setdefault(module, {})
    if key not in found:
        found[key] = find_default_layer(module, xs, extra, layer_input)
    return found[key]


def find_default_layer(module: nn.Module, xs: Tensors, extra: ForwardArgs = ForwardArgs(),
                       layer_input: bool = False) -> str:
    """The last layer (in execution order) whose output (or input, for ``layer_input``) has a
    spatial grid of more than one cell (netloupe.layouts: NCHW, NHWC or grid tokens), leaving out
    the insides of attention layers; token layers only before the last attention layer completes
    (after it, only the class token reaches the output, so grid tokens get no gradient)."""
    names = [n for n, _ in module.named_modules() if n]
    first = torch.zeros(1, dtype=torch.long)
    with probe(module, () if layer_input else names, layer_inputs=names if layer_input else (), detach=True) as p, \
            torch.no_grad():
        extra.take(first).call(module, [x[:1] for x in xs])
    captured = p.layer_inputs if layer_input else p.activations
    order = list(captured)
    attention = [n for n, m in module.named_modules() if n and "Attention" in type(m).__name__]
    last_attention = max((order.index(n) for n in attention if n in captured), default=len(order))
    spatial: List[str] = []
    for i, name in enumerate(order):
        if any(name.startswith(a + ".") for a in attention):
            continue
        layout = p.layout(name, captured[name].shape)
        grid = layout.spatial(captured[name].shape)
        if grid is not None and grid[0] * grid[1] > 1 and (layout.kind != "tokens" or i < last_attention):
            spatial.append(name)
    if not spatial:
        raise NetloupeError("found no layer with a spatial output for a CAM; pass layer='name' (and, for a layout "
                            "netloupe cannot read, load_model(model, layouts={name: ...}) or reshape=)")
    return spatial[-1]


def interpolation_mode(interpolate: Union[bool, str]) -> Optional[str]:
    """True means bilinear; False or None keeps the layer's resolution."""
    if interpolate is True:
        return "bilinear"
    if interpolate is False or interpolate is None:
        return None
    if interpolate not in INTERPOLATIONS:
        raise InputError(f"interpolate must be True, False or one of {', '.join(INTERPOLATIONS)}; got {interpolate!r}")
    return interpolate


def _layer_and_grad(c: Prepared, layer: Optional[UnitLike], reshape: Optional[Reshape], layer_input: bool
                    ) -> Tuple[str, torch.Tensor, torch.Tensor]:
    """The CAM layer's name, its output (or input) as [N, C, h, w], and the target's gradient there."""
    module = c.loaded.module
    name = default_layer(module, c.xs, c.extra, layer_input) if layer is None else as_unit(module, layer).layer
    where = "input" if layer_input else "output"
    with probe(module, c.target.layers if layer_input else [name] + c.target.layers,
               layer_inputs=[name] if layer_input else ()) as p:
        s = c.target.score(c.extra.call(module, c.xs), p, torch.arange(c.n))
        captured = p.layer_inputs if layer_input else p.activations
        if name not in captured:
            raise NetloupeError(f"layer {name!r} did not run (or took/gave no tensor) in the forward pass; choose a "
                                "layer the model calls (netloupe.layers(model) lists them)")
        act = captured[name]
        (grad,) = torch.autograd.grad(s.sum(), act, allow_unused=True) if s.requires_grad else (None,)
    if grad is None:
        raise NetloupeError(f"the target does not depend on the {where} of layer {name!r} (an unused branch?); "
                            "choose a layer on the path from the input to the target")
    raw_shape = tuple(act.shape)
    act = act.detach()
    if reshape is not None:
        return name, reshape(act), reshape(grad)
    layout = p.layout(name, raw_shape)
    act_grid, grad_grid = layout.grid_view(act), layout.grid_view(grad)
    if act_grid is None or grad_grid is None:  # both or neither: they have one shape
        raise NetloupeError(f"layer {name!r} has {where} shape {raw_shape} (layout {layout}), no spatial grid; "
                            "choose a layer with one, or give its layout: load_model(model, layouts={name: ...}) "
                            "(see netloupe.layouts), or reshape= (its output -> [N, C, h, w])")
    return name, act_grid, grad_grid


def _image_input(c: Prepared) -> int:
    """Which input a CAM is drawn on: the first with an [N, C, H, W] image layout."""
    return next((i for i, x in enumerate(c.xs) if x.dim() == 4), 0)


def _finish(cam: torch.Tensor, c: Prepared, name: str, method: str, interpolate: Union[bool, str], relu: bool,
            channel: Optional[int], layer_input: bool) -> Attribution:
    if relu:
        cam = cam.clamp(min=0)
    mode = interpolation_mode(interpolate)
    drawn = _image_input(c)
    if mode is not None:
        if c.xs[drawn].dim() != 4:
            raise InputError("there is no image input [N, C, H, W] to resize the CAM to; pass interpolate=False")
        cam = upsample(cam, c.xs[drawn].shape[2:], mode)
    return Attribution(cam, method, c.target.describe(), c.xs[drawn].detach(), c.loaded.preprocess,
                       extra={"layer": name, "channel": channel, "interpolate": mode, "layer_input": layer_input,
                              "input": drawn})


def upsample(cam: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    """A CAM [N, 1, h, w] resized to ``size`` (captum's LayerAttribution.interpolate)."""
    return F.interpolate(cam, size=tuple(size), mode=mode, **({} if mode == "nearest" else {"align_corners": False}))


def _weighted(act: torch.Tensor, weights: torch.Tensor, channel: Optional[int], layer: str) -> torch.Tensor:
    if channel is not None:
        check_channel(layer, channel, act.shape[1])
        return weights[:, channel, None, None, None] * act[:, channel:channel + 1]
    return (weights[:, :, None, None] * act).sum(1, keepdim=True)


@register(rank=70)
def grad_cam(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *, layer: Optional[UnitLike] = None,
             channel: Optional[int] = None, interpolate: Union[bool, str] = True, relu: bool = True,
             reshape: Optional[Reshape] = None, layer_input: bool = False, forward_args: object = None) -> Attribution:
    """Grad-CAM: the layer's channels weighted by their mean gradient, summed.

    layer defaults to the last layer with a spatial output; ``layer_input=True`` uses what goes
    into the layer instead of what comes out (captum's attribute_to_layer_input); ``channel``
    gives that one channel's term; ``interpolate`` resizes to the input: True or "bilinear",
    "nearest", or False to keep the layer's resolution. Token (ViT, DeiT, Mixer) and
    channels-last (Swin) layers are read by their layout (netloupe.layouts) with no reshape;
    ``reshape`` maps an output to [N, C, h, w] by hand for anything else. With several inputs the map is drawn on the first
    image input. A layer the target does not depend on is an error.
    """
    c = prepare(model, inputs, target, forward_args)
    name, act, grad = _layer_and_grad(c, layer, reshape, layer_input)
    weights = grad.mean(dim=(2, 3))
    return _finish(_weighted(act, weights, channel, name), c, name, "grad_cam", interpolate, relu, channel, layer_input)


@register(rank=80)
def grad_cam_pp(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
                layer: Optional[UnitLike] = None, channel: Optional[int] = None, interpolate: Union[bool, str] = True,
                relu: bool = True, reshape: Optional[Reshape] = None, layer_input: bool = False,
                forward_args: object = None) -> Attribution:
    """Grad-CAM++: channel weights from positive gradients, each position weighted by the
    closed-form alpha of the paper (exponential-score form), which favours every instance
    of a class over the strongest one. Options as in grad_cam."""
    c = prepare(model, inputs, target, forward_args)
    name, act, grad = _layer_and_grad(c, layer, reshape, layer_input)
    g2 = grad * grad
    g3 = g2 * grad
    denom = 2 * g2 + act.sum(dim=(2, 3), keepdim=True) * g3 + 1e-6
    alpha = torch.where(grad != 0, g2 / denom, torch.zeros_like(g2))
    weights = (alpha * grad.clamp(min=0)).sum(dim=(2, 3))
    return _finish(_weighted(act, weights, channel, name), c, name, "grad_cam_pp", interpolate, relu, channel, layer_input)


@register(view="raw", rank=90)
def guided_grad_cam(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
                    layer: Optional[UnitLike] = None, reshape: Optional[Reshape] = None, interpolate: str = "bilinear",
                    layer_input: bool = False, forward_args: object = None) -> Attribution:
    """Guided backprop times the Grad-CAM map resized to the input ("bilinear" or "nearest",
    captum's default): fine detail, class-specific. With several inputs, each image input
    [N, C, H, W] gets its own product; inputs without a spatial grid get None."""
    mode = interpolation_mode(interpolate)
    if mode is None:
        raise InputError("guided_grad_cam multiplies by the CAM at the input's size; interpolate must be "
                         f"one of {', '.join(INTERPOLATIONS)}")
    cam = grad_cam(model, inputs, target, layer=layer, reshape=reshape, interpolate=False, layer_input=layer_input,
                   forward_args=forward_args)
    guided = guided_backprop(model, inputs, target=cam.target, forward_args=forward_args)
    cam_map = cast(torch.Tensor, cam.values)  # a CAM is one map [N, 1, h, w], even for several inputs
    guided_values = guided.values
    if not isinstance(guided_values, tuple):  # not several
        return Attribution(guided_values * upsample(cam_map, guided_values.shape[2:], mode), "guided_grad_cam",
                           cam.target, guided.inputs, cam.preprocess, extra={**cam.extra, "interpolate": mode})
    values = tuple(g * upsample(cam_map, g.shape[2:], mode) if g is not None and g.dim() == 4 else None
                   for g in guided_values)  # guided backprop gives every input a gradient (never None)
    return Attribution(values, "guided_grad_cam", cam.target, guided.inputs, cam.preprocess,
                       extra={**cam.extra, "interpolate": mode})
