"""netloupe: see what a PyTorch network has learned and why it decides."""

from . import dropout, images, samples
from .dropout import DropoutAugmentation, DropoutSweep, augment
from .dropout import sweep as dropout_sweep
from .errors import InputError, ModelError, NetloupeError, UnitError
from .images import Preprocess
from .models import LoadedModel, layers, load_model
from .probe import Probe, probe
from .units import Unit

__version__ = "0.1.0"

__all__ = [
    "DropoutAugmentation", "DropoutSweep", "InputError", "LoadedModel", "ModelError", "NetloupeError", "Preprocess", "Probe", "Unit", "UnitError",
    "augment", "dropout", "dropout_sweep", "images", "layers", "load_model", "probe", "samples",
]
