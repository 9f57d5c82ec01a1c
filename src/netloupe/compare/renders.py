"""Render-based comparison (transfer-visualization's method, done right): the same channels
rendered in every model with the same seed, parameterization and transforms, then compared
picture to picture."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..errors import NetloupeError
from ..models import LoadedModel, forward
from ..optvis import visualize
from ..probe import probe
from ..units import Unit

#: A render whose pixel values spread less than this (standard deviation over the image, in
#: [0, 1] units) is "gray": the optimization found nothing to draw.
GRAY_STD = 0.02


def renders(models: List[LoadedModel], layer: str, channels: Sequence[int], steps: int, size: int, seed: int,
            batch_size: Optional[int], progress: bool) -> List[torch.Tensor]:
    """Each model's renders [C, 3, size, size] of ``channels``: one ``visualize`` per model, batched
    over the channels, with the same seed, so the same starting images and transforms."""
    units = [Unit(layer, c) for c in channels]
    return [visualize(m, units, size=size, steps=steps, seed=seed, batch_size=batch_size, progress=progress)
            .images.float().cpu() for m in models]


def gray(images: torch.Tensor) -> torch.Tensor:
    """[C] whether each render [C, 3, h, w] (floats in [0, 1]) has almost no contrast. Measured
    in float, never on uint8 pixels, so nothing wraps around (the seed's bug)."""
    return images.flatten(1).std(1) < GRAY_STD


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[C] structural similarity of each pair of renders (scikit-image's, on all three colours)."""
    from skimage.metrics import structural_similarity

    out = []
    for x, y in zip(a.permute(0, 2, 3, 1).double().numpy(), b.permute(0, 2, 3, 1).double().numpy()):
        out.append(structural_similarity(x, y, channel_axis=2, data_range=1.0))
    return torch.tensor(out, dtype=torch.float64)


def _penultimate(module: torch.nn.Module) -> str:
    """The last Linear layer: its input is the network's penultimate features."""
    linear = [name for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)]
    if not linear:
        raise NetloupeError(f"{type(module).__name__} has no Linear layer whose input would be its penultimate "
                            "features; give reference= a classifier")
    return linear[-1]


def embed(reference: LoadedModel, images: torch.Tensor, gram_layer: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """The reference network's penultimate features [C, D] of renders [C, 3, h, w] in [0, 1], and
    the Gram matrices [C, c, c] of its ``gram_layer`` on them."""
    last = _penultimate(reference.module)
    x = torch.nn.functional.interpolate(images, size=reference.input_size, mode="bilinear", align_corners=False)
    x = reference.preprocess.normalize(x).to(reference.device)
    with probe(reference, [gram_layer], layer_inputs=[last], detach=True) as p, torch.no_grad():
        forward(reference.module, (x,))
        features = p.layer_inputs[last].flatten(1).double().cpu()
        positions = p.layout(gram_layer).positions(p.activations[gram_layer]).double().cpu()  # [C, c, P]
    grams = positions @ positions.transpose(1, 2) / positions.shape[2]
    return features, grams


def render_measures(models: List[LoadedModel], reference: LoadedModel, layer: str, channels: Sequence[int],
                    gram_layer: str, steps: int, size: int, seed: int, batch_size: Optional[int], progress: bool
                    ) -> Tuple[Dict[int, Dict[str, torch.Tensor]], List[torch.Tensor], List[torch.Tensor]]:
    """Per later model: cosine similarity of the renders' embeddings, relative Gram distance, SSIM
    against the first model's renders, and every model's gray flags and renders."""
    pictures = renders(models, layer, channels, steps, size, seed, batch_size, progress)
    features, grams = zip(*(embed(reference, p, gram_layer) for p in pictures))
    out: Dict[int, Dict[str, torch.Tensor]] = {}
    for i in range(1, len(models)):
        cos = torch.nn.functional.cosine_similarity(features[0], features[i], dim=1)
        diff = torch.linalg.matrix_norm(grams[i] - grams[0]) / torch.linalg.matrix_norm(grams[0]).clamp_min(1e-12)
        out[i] = {"render_cosine": cos, "gram_distance": diff, "ssim": ssim(pictures[0], pictures[i])}
    return out, [gray(p) for p in pictures], pictures
