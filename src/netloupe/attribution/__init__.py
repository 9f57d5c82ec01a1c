"""Attribution: which input pixels (or layer cells) explain a model's score for a target."""

from __future__ import annotations

from typing import Callable, Dict

from ..errors import InputError
from . import metrics
from .cam import grad_cam, grad_cam_pp, guided_grad_cam
from .gradients import deconvnet, guided_backprop, input_x_gradient, saliency
from .integrated import integrated_gradients
from .occlusion import occlusion
from .result import Attribution
from .sheet import ContactSheet, contact_sheet
from .smooth import smoothgrad

METHODS: Dict[str, Callable] = {
    "saliency": saliency,
    "input_x_gradient": input_x_gradient,
    "guided_backprop": guided_backprop,
    "deconvnet": deconvnet,
    "integrated_gradients": integrated_gradients,
    "smoothgrad": smoothgrad,
    "grad_cam": grad_cam,
    "grad_cam_pp": grad_cam_pp,
    "guided_grad_cam": guided_grad_cam,
    "occlusion": occlusion,
}


def attribute(model, inputs, *name, **kw) -> Attribution:
    """Run an attribution method by name (a key of METHODS) with its keyword arguments:
    ``attribute(model, x, method="grad_cam")``, or with the name third,
    ``attribute(model, x, "integrated_gradients", method="gausslegendre")`` where the
    method's own ``method=`` argument is needed."""
    if len(name) > 1:
        raise InputError("attribute takes one method name")
    method = name[0] if name else kw.pop("method", "saliency")
    if method not in METHODS:
        raise InputError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[method](model, inputs, **kw)


__all__ = ["METHODS", "metrics", "Attribution", "ContactSheet", "attribute", "contact_sheet", "deconvnet", "grad_cam",
           "grad_cam_pp", "guided_backprop", "guided_grad_cam", "input_x_gradient", "integrated_gradients", "occlusion",
           "saliency", "smoothgrad"]
