"""The CAM base: a class activation map weighs a layer's channels and sums them (Grad-CAM,
Selvaraju et al. 2017, and its variants). A variant is one function that says how it weighs the
channels, registered with :func:`cam`; choosing the layer (the last one with a spatial grid, on
CNNs and vision transformers alike), reading its layout, the target's gradient there, the sum, the
ReLU, resizing to the input and the result come from here, as in pytorch-grad-cam's BaseCAM."""

from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from ..errors import InputError, NetloupeError
from ..layouts import overrides
from ..probe import probe
from ..units import UnitLike, as_unit, check_channel
from .engine import (
    Attribution,
    ForwardArgs,
    MethodInputs,
    ModelLike,
    Prepared,
    TargetLike,
    Tensors,
    interpolation_mode,
    prepare,
    upsample,
)
from .registry import MethodFn, register

#: maps a layer's output to [N, C, h, w] by hand, for a layout netloupe cannot read
Reshape = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class LayerMaps:
    """What a CAM variant weighs: the layer's output (or input) ``act`` [N, C, h, w] over its grid,
    the target score's gradient there ``grad`` (same shape), the layer's name, and the resolved
    call (model, inputs, target) for variants that run the model again."""

    act: torch.Tensor
    grad: torch.Tensor
    layer: str
    call: Prepared


#: a variant's weighting: (LayerMaps, its own keywords) -> weights [N, C], or [N, C, h, w] per position
Weigh = Callable[..., torch.Tensor]


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


def layer_maps(c: Prepared, layer: Optional[UnitLike], reshape: Optional[Reshape], layer_input: bool) -> LayerMaps:
    """The CAM layer's output (or input) as [N, C, h, w], and the target's gradient there."""
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
        return LayerMaps(reshape(act), reshape(grad), name, c)
    layout = p.layout(name, raw_shape)
    act_grid, grad_grid = layout.grid_view(act), layout.grid_view(grad)
    if act_grid is None or grad_grid is None:  # both or neither: they have one shape
        raise NetloupeError(f"layer {name!r} has {where} shape {raw_shape} (layout {layout}), no spatial grid; "
                            "choose a layer with one, or give its layout: load_model(model, layouts={name: ...}) "
                            "(see netloupe.layouts), or reshape= (its output -> [N, C, h, w])")
    return LayerMaps(act_grid, grad_grid, name, c)


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


def _weighted(act: torch.Tensor, weights: torch.Tensor, channel: Optional[int], layer: str) -> torch.Tensor:
    """The CAM [N, 1, h, w]: channels times their weights ([N, C], or [N, C, h, w] per position),
    summed; or ``channel``'s term alone."""
    if weights.dim() == 2:
        weights = weights[:, :, None, None]
    if channel is not None:
        check_channel(layer, channel, act.shape[1])
        return (weights * act)[:, channel:channel + 1]
    return (weights * act).sum(1, keepdim=True)


_OPTIONS = """

    Options of every CAM (netloupe.attribution.cam): ``layer`` defaults to the last layer with a
    spatial output; ``layer_input=True`` uses what goes into the layer instead of what comes out
    (captum's attribute_to_layer_input); ``channel`` gives that one channel's term; ``interpolate``
    resizes to the input: True or "bilinear", "nearest", or False to keep the layer's resolution;
    ``relu`` keeps the positive part. Token (ViT, DeiT, Mixer) and channels-last (Swin) layers are
    read by their layout (netloupe.layouts) with no reshape; ``reshape`` maps an output to
    [N, C, h, w] by hand for anything else. With several inputs the map is drawn on the first image
    input. A layer the target does not depend on is an error."""


def cam(*, rank: int, caption: str = "", quick: Optional[Dict[str, Any]] = None) -> Callable[[Weigh], MethodFn]:
    """Register a CAM variant from its weighting function ``weigh(maps: LayerMaps, **options)``,
    which returns channel weights [N, C] (or [N, C, h, w], one weight per position); the result is
    an attribution method named after it, taking the options common to every CAM (see _OPTIONS)
    and the weighting function's own keyword-only ones."""
    def decorate(weigh: Weigh) -> MethodFn:
        name = weigh.__name__

        def method(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
                   layer: Optional[UnitLike] = None, channel: Optional[int] = None,
                   interpolate: Union[bool, str] = True, relu: bool = True, reshape: Optional[Reshape] = None,
                   layer_input: bool = False, forward_args: object = None, **options: Any) -> Attribution:
            c = prepare(model, inputs, target, forward_args)
            maps = layer_maps(c, layer, reshape, layer_input)
            weights = weigh(maps, **options)
            return _finish(_weighted(maps.act, weights, channel, maps.layer), c, maps.layer, name, interpolate, relu,
                           channel, layer_input)

        signature = inspect.signature(method)
        own = [p for p in inspect.signature(weigh).parameters.values() if p.kind is p.KEYWORD_ONLY]
        common = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        method.__module__, method.__name__, method.__qualname__ = weigh.__module__, name, weigh.__qualname__
        method.__doc__ = (weigh.__doc__ or "").rstrip() + _OPTIONS
        method.__signature__ = signature.replace(parameters=common + own)  # type: ignore[attr-defined]
        method.weigh = weigh  # type: ignore[attr-defined]  # the variant's own part, for reuse
        return register(name, rank=rank, caption=caption, quick=quick)(method)
    return decorate
