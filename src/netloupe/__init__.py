"""netloupe: see what a PyTorch network has learned and why it decides."""

from . import images, samples
from .errors import InputError, ModelError, NetloupeError, UnitError
from .images import Preprocess
from .models import LoadedModel, layers, load_model
from .probe import Probe, probe
from . import stats
from .stats import receptive_field, report, scan, top_patches
from .units import Unit

__version__ = "0.1.0"

__all__ = [
    "InputError", "LoadedModel", "ModelError", "NetloupeError", "Preprocess", "Probe", "Unit", "UnitError",
    "images", "layers", "load_model", "probe", "samples",
    "stats", "scan", "receptive_field", "top_patches", "report",
]
