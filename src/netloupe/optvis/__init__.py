"""Feature visualization (Lucid's methods): parameterizations, transforms, objectives, the
render loop and ready-made recipes."""

from . import objectives, param, transforms
from .objectives import Objective
from .param import Param, from_image, image, pixel
from .recipes import (
    FeatureVisualizer,
    dream_layer,
    min_size,
    visualize,
    visualize_channels,
    visualize_class,
    visualize_diverse,
)
from .render import Rendering, render

__all__ = ["FeatureVisualizer", "Objective", "Param", "Rendering", "dream_layer", "from_image", "image", "min_size",
           "objectives", "param", "pixel", "render", "transforms", "visualize", "visualize_channels",
           "visualize_class", "visualize_diverse"]
