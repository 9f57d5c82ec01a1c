"""netloupe: see what a PyTorch network has learned and why it decides."""

from . import attribution, images, samples
from .attribution import (Attribution, attribute, deconvnet, grad_cam, grad_cam_pp, guided_backprop,
                          guided_grad_cam, input_x_gradient, integrated_gradients, occlusion, saliency, smoothgrad)
from .errors import InputError, ModelError, NetloupeError, UnitError
from .images import Preprocess
from .models import LoadedModel, layers, load_model
from .probe import Probe, probe
from . import stats
from .stats import receptive_field, report, scan, top_patches
from .units import Unit

__version__ = "0.1.0"

__all__ = [
    "Attribution", "attribute", "attribution", "deconvnet", "grad_cam", "grad_cam_pp", "guided_backprop",
    "guided_grad_cam", "input_x_gradient", "integrated_gradients", "occlusion", "saliency", "smoothgrad",
    "InputError", "LoadedModel", "ModelError", "NetloupeError", "Preprocess", "Probe", "Unit", "UnitError",
    "images", "layers", "load_model", "probe", "samples",
    "stats", "scan", "receptive_field", "top_patches", "report",
]
