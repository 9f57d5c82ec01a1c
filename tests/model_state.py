"""The leave-the-model-as-found check: snapshot everything a call could change, compare after."""

from __future__ import annotations

import contextlib
import random

import torch
import torch.nn as nn

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_state_dict_hooks", "_load_state_dict_pre_hooks")


class _Exact:
    """A copy of a state dict that compares equal only to bit-identical tensors (NaN included)."""

    def __init__(self, state):
        self.state = {k: v.detach().clone() for k, v in state.items()}

    def __eq__(self, other):
        a, b = self.state, other.state
        return a.keys() == b.keys() and all(
            a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
            and torch.equal(_bits(a[k]), _bits(b[k])) for k in a)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bits as integers, so that NaN equals NaN."""
    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    return t.contiguous().view(-1).view(ints[t.element_size()]) if t.dim() else t.reshape(1).view(ints[t.element_size()])


def snapshot(model: nn.Module) -> dict:
    return {
        "state_dict": _Exact(model.state_dict()),
        "training": [(n, m.training) for n, m in model.named_modules()],
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "grads": [(n, p.grad is None) for n, p in model.named_parameters()],
        "hooks": [(n, d, len(getattr(m, d, {}))) for n, m in model.named_modules() for d in _HOOK_DICTS],
        "global_hooks": (len(nn.modules.module._global_forward_hooks),
                         len(nn.modules.module._global_forward_pre_hooks),
                         len(nn.modules.module._global_backward_hooks)),
        "function_modes": torch._C._len_torch_function_stack(),
    }


def scramble(model: nn.Module, seed: int = 0) -> nn.Module:
    """Put a model in a mixed, unusual state (some modules training, some parameters frozen),
    so that a function which merely resets to defaults fails the check."""
    rng = random.Random(seed)
    for m in model.modules():
        m.training = rng.random() < 0.5
    for p in model.parameters():
        p.requires_grad_(rng.random() < 0.7)
    return model


@contextlib.contextmanager
def leaves_unchanged(model: nn.Module):
    """Assert that the block leaves ``model`` exactly as found (even when it raises)."""
    before = snapshot(model)
    try:
        yield
    finally:
        after = snapshot(model)
        for key in before:
            assert after[key] == before[key], f"the call changed the model's {key}"
