"""Grad-CAM++ (Chattopadhay et al. 2018): weights from the positive gradients, each position
weighted by the paper's closed-form alpha."""

from __future__ import annotations

import torch

from .cam import LayerMaps, cam


@cam(rank=80)
def grad_cam_pp(maps: LayerMaps) -> torch.Tensor:
    """Grad-CAM++: channel weights from positive gradients, each position weighted by the
    closed-form alpha of the paper (exponential-score form), which favours every instance of a
    class over the strongest one."""
    grad, act = maps.grad, maps.act
    g2 = grad * grad
    g3 = g2 * grad
    denom = 2 * g2 + act.sum(dim=(2, 3), keepdim=True) * g3 + 1e-6
    alpha = torch.where(grad != 0, g2 / denom, torch.zeros_like(g2))
    return (alpha * grad.clamp(min=0)).sum(dim=(2, 3))
