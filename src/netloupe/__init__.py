"""netloupe: see what a PyTorch network has learned and why it decides."""

from . import images, samples
from .errors import InputError, ModelError, NetloupeError, UnitError
from .images import Preprocess
from .models import LoadedModel, layers, load_model
from . import optvis
from .optvis import (FeatureVisualizer, dream_layer, render, visualize, visualize_channels, visualize_class,
                     visualize_diverse)
from .probe import Probe, probe
from .units import Unit

__version__ = "0.1.0"

__all__ = [
    "InputError", "LoadedModel", "ModelError", "NetloupeError", "Preprocess", "Probe", "Unit", "UnitError",
    "images", "layers", "load_model", "probe", "samples",
    "FeatureVisualizer", "dream_layer", "optvis", "render", "visualize", "visualize_channels", "visualize_class",
    "visualize_diverse",
]
