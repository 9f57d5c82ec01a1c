"""Grad-CAM (Selvaraju et al. 2017): each channel weighted by its mean gradient."""

from __future__ import annotations

import torch

from .cam import LayerMaps, cam


@cam(rank=70)
def grad_cam(maps: LayerMaps) -> torch.Tensor:
    """Grad-CAM: the layer's channels weighted by their mean gradient, summed."""
    return maps.grad.mean(dim=(2, 3))
