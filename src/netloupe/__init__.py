"""netloupe: see what a PyTorch network has learned and why it decides."""

from . import attribution, dropout, images, layouts, optvis, samples, stats
from .attribution import (
    Attribution,
    attention_rollout,
    attribute,
    deconvnet,
    deeplift,
    deeplift_shap,
    grad_cam,
    grad_cam_pp,
    gradient_rollout,
    gradient_shap,
    guided_backprop,
    guided_grad_cam,
    input_x_gradient,
    integrated_gradients,
    internal_influence,
    layer_conductance,
    lrp,
    neuron_conductance,
    occlusion,
    saliency,
    smoothgrad,
)
from .compare import Comparison, compare, layer_cka
from .dropout import DropoutAugmentation, DropoutSweep, augment
from .dropout import sweep as dropout_sweep
from .errors import InputError, ModelError, NetloupeError, UnitError
from .explorer.atlas import atlas
from .images import Preprocess
from .models import LoadedModel, layers, load_model
from .optvis import (
    FeatureVisualizer,
    adversarial,
    caricature,
    dream,
    gram,
    invert,
    render,
    style_transfer,
    visualize,
    visualize_channels,
    visualize_class,
    visualize_diverse,
)
from .probe import Probe, probe
from .reports import report
from .stats import receptive_field, scan, top_patches
from .units import Unit

__version__ = "0.2.0"  # as pyproject.toml says (tests/test_package.py checks the wheel)

__all__ = [
    # foundation
    "InputError", "LoadedModel", "ModelError", "NetloupeError", "Preprocess", "Probe", "Unit", "UnitError",
    "images", "layers", "layouts", "load_model", "probe", "samples",
    # attribution
    "Attribution", "attention_rollout", "attribute", "attribution", "deconvnet", "deeplift", "deeplift_shap",
    "grad_cam", "grad_cam_pp", "gradient_rollout", "gradient_shap", "guided_backprop", "guided_grad_cam", "input_x_gradient", "integrated_gradients", "internal_influence",
    "layer_conductance", "lrp", "neuron_conductance", "occlusion",
    "saliency", "smoothgrad",
    # feature visualization
    "FeatureVisualizer", "optvis", "render", "visualize", "visualize_channels", "visualize_class",
    "visualize_diverse",
    # photos: dream, invert, caricature, adversarial twins; style transfer
    "adversarial", "caricature", "dream", "invert", "gram", "style_transfer",
    # the explorer's static atlas
    "atlas",
    # comparing models
    "Comparison", "compare", "layer_cka",
    # dropout as data augmentation
    "DropoutAugmentation", "DropoutSweep", "augment", "dropout", "dropout_sweep",
    # dataset statistics
    "receptive_field", "report", "scan", "stats", "top_patches",
]
