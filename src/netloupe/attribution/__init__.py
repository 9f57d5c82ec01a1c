"""Attribution: which input pixels (or layer cells) explain a model's score for a target.

Every method registers itself with ``@registry.register`` and is listed in METHODS, by name.
Every module of this package is imported here, so a method in a new file registers itself
for ``attribute()``, the command line, the contact sheet and the tests with no other change."""

import importlib
import pkgutil

from . import metrics
from .conductance import internal_influence, layer_conductance, neuron_conductance
from .deeplift import deeplift, deeplift_shap
from .grad_cam import grad_cam
from .grad_cam_pp import grad_cam_pp
from .gradient_shap import gradient_shap
from .gradients import deconvnet, guided_backprop, input_x_gradient, saliency
from .guided_grad_cam import guided_grad_cam
from .integrated import integrated_gradients
from .lrp import lrp
from .occlusion import occlusion
from .registry import METHODS, Method, attribute, lookup, register
from .result import Attribution
from .rollout import attention_rollout, gradient_rollout
from .sheet import ContactSheet, contact_sheet
from .smooth import smoothgrad

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
del _module

__all__ = ["METHODS", "Method", "metrics", "Attribution", "ContactSheet", "attention_rollout", "attribute",
           "contact_sheet", "deconvnet", "deeplift", "deeplift_shap", "grad_cam", "grad_cam_pp", "gradient_rollout", "gradient_shap", "guided_backprop",
           "guided_grad_cam", "input_x_gradient", "integrated_gradients", "internal_influence", "layer_conductance", "lookup", "lrp",
           "neuron_conductance", "occlusion", "register", "saliency",
           "smoothgrad"]
