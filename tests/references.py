"""Hand-written references for the ReLU backward rules (guided backprop, deconvnet), written
independently of netloupe: the oracles where captum cannot see a ReLU."""

from __future__ import annotations

import torch
import torch.nn as nn


class RefRule(torch.autograd.Function):
    """clamp(x, 0, hi) with the guided or deconv backward, written independently of netloupe."""

    @staticmethod
    def forward(ctx, x, hi, rule):
        ctx.rule, ctx.hi = rule, hi
        ctx.save_for_backward(x)
        return torch.clamp(x, min=0, max=hi)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if ctx.rule == "deconv":
            return torch.where(g > 0, g, torch.zeros_like(g)), None, None
        inside = (x > 0) if ctx.hi is None else ((x > 0) & (x < ctx.hi))
        return torch.where((g > 0) & inside, g, torch.zeros_like(g)), None, None


class RefReLU(nn.Module):
    """ReLU (or ReLU6, with hi=6) whose backward follows ``rule``."""

    def __init__(self, rule, hi=None):
        super().__init__()
        self.rule, self.hi = rule, hi

    def forward(self, x):
        return RefRule.apply(x, self.hi, self.rule)
