"""The ReLU rules of guided backprop (Springenberg et al. 2015) and deconvnet (Zeiler & Fergus
2014), for every ReLU-family node of the graph: nn.ReLU (in place or reused), F.relu, torch.relu,
relu_, and ReLU6 (hardtanh with min 0)."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch.autograd.graph import Node

from . import NodeHook, Rule, register


def is_relu(node: Node) -> bool:
    """ReLU, in place or not, however called; hardtanh with min 0 (ReLU6)."""
    name = node.name()
    if name.startswith("ReluBackward"):
        return True
    return name.startswith("HardtanhBackward") and getattr(node, "_saved_min_val", None) == 0


def _positive_incoming(grad_outputs: Tuple[Optional[torch.Tensor], ...]) -> Tuple[Optional[torch.Tensor], ...]:
    return tuple(None if g is None else g.clamp(min=0) for g in grad_outputs)


def _positive_passed(grad_inputs: Tuple[Any, ...], grad_outputs: Tuple[torch.Tensor, ...]) -> Tuple[torch.Tensor]:
    return (grad_outputs[0].clamp(min=0),)


@register
class Guided(Rule):
    """Only positive gradient passes, and only where the forward input was positive: the node
    still masks by its input, fed only the positive part of the incoming gradient."""

    name = "guided"

    def node_hook(self, node: Node) -> Optional[NodeHook]:
        return ("prehook", _positive_incoming) if is_relu(node) else None


@register
class Deconv(Rule):
    """Only positive gradient passes, whatever the forward input: the node's result is replaced
    by the positive part of the incoming gradient."""

    name = "deconv"

    def node_hook(self, node: Node) -> Optional[NodeHook]:
        return ("hook", _positive_passed) if is_relu(node) else None
