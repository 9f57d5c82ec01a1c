"""Feature visualization (Lucid's methods, Yosinski et al.'s regularized pixels) and style transfer:
parameterizations, transforms, objectives, the render loop, ready-made recipes and recipes from
photos (DeepDream with octaves, feature inversion, caricatures, adversarial twins)."""

from . import classic, objectives, param, photo, style, transforms
from .objectives import Objective
from .param import Param, Pixels, from_image, image, masked, pixel, pixels
from .photo import (
    Adversarial,
    Caricature,
    Inversion,
    PhotoRendering,
    adversarial,
    caricature,
    dream,
    invert,
)
from .recipes import (
    FeatureVisualizer,
    min_size,
    visualize,
    visualize_channels,
    visualize_class,
    visualize_diverse,
)
from .render import Rendering, render
from .style import gram, style_transfer

__all__ = ["Adversarial", "Caricature", "FeatureVisualizer", "Inversion", "Objective", "Param", "PhotoRendering",
           "Pixels", "Rendering", "adversarial", "caricature", "classic", "dream", "from_image", "gram", "image",
           "invert", "masked", "min_size", "objectives", "param", "photo", "pixel", "pixels", "render", "style",
           "style_transfer", "transforms", "visualize", "visualize_channels", "visualize_class", "visualize_diverse"]
