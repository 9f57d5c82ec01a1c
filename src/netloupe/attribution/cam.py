"""Class activation maps: Grad-CAM (Selvaraju et al. 2017), Grad-CAM++ (Chattopadhay et al.
2018) and guided Grad-CAM, for CNNs and vision transformers."""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..errors import NetloupeError
from ..models import forward
from ..probe import probe
from ..units import UnitLike, as_unit
from .gradients import guided_backprop, prepare
from .result import Attribution
from .targets import TargetLike


def default_layer(module, x: torch.Tensor) -> str:
    """The last layer (in execution order) with a spatial output: [N, C, H, W] with H*W > 1,
    or transformer tokens [N, 1 + s*s, D] computed before the last attention layer (after
    it, only the class token reaches the output, so patch tokens get no gradient)."""
    names = [n for n, _ in module.named_modules() if n]
    with probe(module, names, detach=True) as p, torch.no_grad():
        forward(module, (x[:1],))
    order = list(p.activations)
    kinds = {n: type(m).__name__ for n, m in module.named_modules()}
    attention = [i for i, n in enumerate(order) if "Attention" in kinds[n]]
    last_attention = attention[-1] if attention else len(order)
    spatial = [n for i, (n, a) in enumerate(p.activations.items())
               if _grid(a) is not None and (a.dim() == 4 or i < last_attention)]
    if not spatial:
        raise NetloupeError("found no layer with a spatial output for a CAM; pass layer='name' "
                            "(and reshape= for token outputs)")
    return spatial[-1]


def _grid(a: torch.Tensor) -> Optional[torch.Tensor]:
    """A layer output as [N, C, h, w], or None if it has no spatial layout."""
    if a.dim() == 4 and a.shape[2] * a.shape[3] > 1:
        return a
    if a.dim() == 3:
        side = math.isqrt(a.shape[1] - 1)
        if side > 1 and side * side == a.shape[1] - 1:  # CLS token + a square of patch tokens
            return a[:, 1:].reshape(a.shape[0], side, side, a.shape[2]).permute(0, 3, 1, 2)
    return None


def _layer_and_grad(model, inputs, target, layer, reshape):
    loaded, x, t = prepare(model, inputs, target)
    name = default_layer(loaded.module, x) if layer is None else as_unit(loaded.module, layer).layer
    with probe(loaded.module, [name] + t.layers) as p:
        s = t.score(forward(loaded.module, (x,)), p, torch.arange(x.shape[0]))
        act = p.activations[name]
        (grad,) = torch.autograd.grad(s.sum(), act)
    act = act.detach()
    if reshape is not None:
        act, grad = reshape(act), reshape(grad)
    else:
        act, grad = _grid(act), _grid(grad)
        if act is None:
            raise NetloupeError(f"layer {name!r} has output shape {tuple(p.activations[name].shape)}, no spatial "
                                "grid; choose a conv layer, or pass reshape= (tokens -> [N, C, h, w])")
    return loaded, x, t, name, act, grad


def _finish(cam, loaded, x, t, name, method, interpolate, relu, channel):
    if relu:
        cam = cam.clamp(min=0)
    if interpolate:
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return Attribution(cam, method, t.describe(), x.detach(), loaded.preprocess,
                       extra={"layer": name, "channel": channel})


def _weighted(act, weights, channel):
    if channel is not None:
        if not 0 <= channel < act.shape[1]:
            raise NetloupeError(f"channel {channel} out of range; the layer has channels 0..{act.shape[1] - 1}")
        return weights[:, channel, None, None, None] * act[:, channel:channel + 1]
    return (weights[:, :, None, None] * act).sum(1, keepdim=True)


def grad_cam(model, inputs, target: TargetLike = "top", layer: Optional[UnitLike] = None,
             channel: Optional[int] = None, interpolate: bool = True, relu: bool = True,
             reshape: Optional[Callable] = None) -> Attribution:
    """Grad-CAM: the layer's channels weighted by their mean gradient, summed.

    layer defaults to the last layer with a spatial output; ``channel`` gives that one
    channel's term; ``interpolate`` resizes bilinearly to the input (False keeps the layer's
    resolution); ``reshape`` maps token outputs to [N, C, h, w] (square + CLS is automatic).
    """
    loaded, x, t, name, act, grad = _layer_and_grad(model, inputs, target, layer, reshape)
    weights = grad.mean(dim=(2, 3))
    return _finish(_weighted(act, weights, channel), loaded, x, t, name, "grad_cam", interpolate, relu, channel)


def grad_cam_pp(model, inputs, target: TargetLike = "top", layer: Optional[UnitLike] = None,
                channel: Optional[int] = None, interpolate: bool = True, relu: bool = True,
                reshape: Optional[Callable] = None) -> Attribution:
    """Grad-CAM++: channel weights from positive gradients, each position weighted by the
    closed-form alpha of the paper (exponential-score form), which favours every instance
    of a class over the strongest one."""
    loaded, x, t, name, act, grad = _layer_and_grad(model, inputs, target, layer, reshape)
    g2 = grad * grad
    g3 = g2 * grad
    denom = 2 * g2 + act.sum(dim=(2, 3), keepdim=True) * g3 + 1e-6
    alpha = torch.where(grad != 0, g2 / denom, torch.zeros_like(g2))
    weights = (alpha * grad.clamp(min=0)).sum(dim=(2, 3))
    return _finish(_weighted(act, weights, channel), loaded, x, t, name, "grad_cam_pp", interpolate, relu, channel)


def guided_grad_cam(model, inputs, target: TargetLike = "top", layer: Optional[UnitLike] = None,
                    reshape: Optional[Callable] = None) -> Attribution:
    """Guided backprop times the Grad-CAM map upsampled to the input: fine detail, class-specific."""
    cam = grad_cam(model, inputs, target, layer=layer, reshape=reshape)
    guided = guided_backprop(model, cam.inputs, target=cam.target)
    return Attribution(guided.values * cam.values, "guided_grad_cam", cam.target, cam.inputs, cam.preprocess,
                       extra=cam.extra)
