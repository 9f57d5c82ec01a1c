"""Guided Grad-CAM (Selvaraju et al. 2017): guided backprop's fine detail times the class-specific
Grad-CAM map, both looked up in the registry."""

from __future__ import annotations

from typing import Optional, cast

import torch

from ..errors import InputError
from ..units import UnitLike
from .cam import Reshape
from .engine import INTERPOLATIONS, Attribution, MethodInputs, ModelLike, TargetLike, interpolation_mode, upsample
from .registry import lookup, register


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
    cam = lookup("grad_cam")(model, inputs, target, layer=layer, reshape=reshape, interpolate=False, layer_input=layer_input,
                   forward_args=forward_args)
    guided = lookup("guided_backprop")(model, inputs, target=cam.target, forward_args=forward_args)
    cam_map = cast(torch.Tensor, cam.values)  # a CAM is one map [N, 1, h, w], even for several inputs
    guided_values = guided.values
    if not isinstance(guided_values, tuple):  # not several
        return Attribution(guided_values * upsample(cam_map, guided_values.shape[2:], mode), "guided_grad_cam",
                           cam.target, guided.inputs, cam.preprocess, extra={**cam.extra, "interpolate": mode})
    values = tuple(g * upsample(cam_map, g.shape[2:], mode) if g is not None and g.dim() == 4 else None
                   for g in guided_values)  # guided backprop gives every input a gradient (never None)
    return Attribution(values, "guided_grad_cam", cam.target, guided.inputs, cam.preprocess,
                       extra={**cam.extra, "interpolate": mode})
