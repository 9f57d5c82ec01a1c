"""What an attribution explains: a class per sample, the predicted class, a unit inside the
network, or any callable that maps the model output to one score per sample."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Union

import torch
import torch.nn as nn

from ..errors import InputError, NetloupeError
from ..probe import Probe, probe
from ..units import Unit
from .inputs import ForwardArgs, Tensors

#: a callable target: the model's output -> one score per sample [N]
ScoreFn = Callable[[Any], torch.Tensor]
TargetLike = Union[int, str, Unit, List[int], torch.Tensor, ScoreFn]


@dataclass
class Target:
    """A resolved target. ``classes`` holds one class index per input sample."""

    classes: Optional[torch.Tensor] = None
    unit: Optional[Unit] = None
    fn: Optional[ScoreFn] = None

    @property
    def layers(self) -> List[str]:
        """Layers the probe must capture to score this target."""
        return [self.unit.layer] if self.unit is not None else []

    def describe(self) -> Union[torch.Tensor, str, ScoreFn, None]:
        """What Attribution.target records: class indices, the unit string, or the callable."""
        if self.classes is not None:
            return self.classes
        return str(self.unit) if self.unit is not None else self.fn

    def score(self, output: Any, p: Probe, rows: torch.Tensor) -> torch.Tensor:
        """One score per batch row; ``rows`` maps each row to its input sample."""
        if self.unit is not None:
            return p.unit_value(self.unit)
        if self.fn is not None:
            s = self.fn(output)
            n = len(rows)
            if not isinstance(s, torch.Tensor) or s.shape != (n,):
                raise NetloupeError(f"a callable target must return one score per sample, shape ({n},); got "
                                    f"{tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__}")
            return s
        if not isinstance(output, torch.Tensor) or output.dim() != 2:
            raise NetloupeError("a class target needs a model that returns [N, classes] logits; for other "
                                "outputs pass a callable target (output -> one score per sample)")
        assert self.classes is not None  # resolve() gives a target classes, a unit or a callable
        classes = self.classes[rows]
        if classes.min() < 0 or classes.max() >= output.shape[1]:
            raise InputError(f"target class {int(classes.max() if classes.max() >= output.shape[1] else classes.min())} "
                             f"out of range; the model has classes 0..{output.shape[1] - 1}")
        return output[torch.arange(len(rows), device=output.device), classes.to(output.device)]


def resolve(module: nn.Module, xs: Tensors, target: TargetLike, extra: Optional[ForwardArgs] = None) -> Target:
    """Turn a user's target into a Target for the batch ``xs`` ("top" runs one forward pass)."""
    n = xs[0].shape[0]
    if callable(target) and not isinstance(target, (Unit, torch.Tensor)):
        return Target(fn=target)
    if isinstance(target, Unit) or (isinstance(target, str) and target != "top"):
        return Target(unit=Unit.parse(target))
    if isinstance(target, str):  # "top": the predicted class of each input
        with probe(module), torch.no_grad():
            out = (extra or ForwardArgs()).call(module, xs)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise NetloupeError("target='top' needs a model that returns [N, classes] logits; "
                                "pass a unit string or a callable target instead")
        return Target(classes=out.argmax(1).cpu())
    classes = _class_indices(target)
    if classes.numel() == 1:
        classes = classes.expand(n).clone()
    if classes.numel() != n:
        raise InputError(f"got {classes.numel()} target classes for {n} inputs; give one per input")
    return Target(classes=classes)


def _class_indices(target: object) -> torch.Tensor:
    """Class indices from an int, a list or a tensor; a number with a fraction is a mistake, not a class."""
    def unsupported() -> InputError:  # built only when raised: a tensor's repr costs a GPU sync
        return InputError(f"unsupported target {target!r}; use an int class, a list with one class per input, "
                          "'top', a unit string like 'layer4:12', or a callable")
    if isinstance(target, bool) or (isinstance(target, torch.Tensor) and target.dtype == torch.bool):
        raise unsupported()
    try:
        t = torch.as_tensor(target).cpu().reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise unsupported() from None
    if t.dtype == torch.bool or t.is_complex():
        raise unsupported()
    if t.is_floating_point():
        if not torch.isfinite(t).all() or (t != t.round()).any():
            raise InputError(f"target {target!r} is not a whole number; a class target is an int class index")
    return t.long()
